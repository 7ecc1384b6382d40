"""The additive baseline: ``L(block) = Σ_edges Σ_ops p · L(op)`` from the op table.

What ProxylessNAS and FBNet use and what the seed tried first. ``L(op)`` is looked up at the
block's (block type, edge kind, resolution) and interpolated between channel grid points
in log-log space (exact for a power law; clamped at the ends). Overheads outside the ops
(the node sums, DARTS's input preprocessing, Python dispatch) are not in it: that is what
the learned models add.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lenna.errors import InputError
from lenna.predict.base import Predictor, register_predictor
from lenna.predict.data import LatencyData
from lenna.space import BLOCK_TYPES, encode
from lenna.space.encode import probabilities

KINDS = ("same", "down")


@register_predictor
class LUTPredictor(Predictor):
    kind = "lut"
    differentiable = True

    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        ops = train.op_table
        if ops is None or ops.empty:
            raise InputError("the lut model needs an op table: run `lenna measure-ops` on the file")
        sp = self.space
        self.channels = sorted(ops["channels"].unique().tolist())
        self.resolutions = sorted(ops["resolution"].unique().tolist())
        # table[bt, kind, res, ch, slot] in ms; NaN where the grid has no entry
        table = np.full((2, 2, len(self.resolutions), len(self.channels), sp.max_ops), np.nan)
        ops = ops.groupby(
            ["block_type", "edge_kind", "op", "resolution", "channels"], as_index=False
        )["latency_ms"].median()
        for r in ops.itertuples():
            bt = 0 if r.block_type == "normal" else 1
            kind = KINDS.index(r.edge_kind)
            names = sp.down_ops if kind == 1 else sp.ops
            if r.op not in names:
                continue
            table[
                bt,
                kind,
                self.resolutions.index(r.resolution),
                self.channels.index(r.channels),
                names.index(r.op),
            ] = r.latency_ms
        for b, k, r in zip(*np.nonzero(~np.isnan(table).all(axis=(3, 4))), strict=True):
            n_ops = len(sp.down_ops if k == 1 else sp.ops)
            hole = np.isnan(table[b, k, r, :, :n_ops])
            if hole.any():
                c = self.channels[int(np.nonzero(hole.any(axis=1))[0][0])]
                raise InputError(
                    f"the op table is incomplete ({BLOCK_TYPES[b]} blocks, {KINDS[k]} edges, "
                    f"resolution {self.resolutions[r]}, channels {c}); run `lenna measure-ops` "
                    "again with the same grid"
                )
        self.table = torch.as_tensor(np.nan_to_num(table, nan=0.0))
        self.present = torch.as_tensor(~np.isnan(table).all(axis=(3, 4)))  # [bt, kind, res]
        self._prepare()

    def _prepare(self) -> None:
        """Derived tensors, built once: log table, channel grid, resolutions, edge kinds; and
        an empty cache of op latencies per shape (the table may be new)."""
        sp = self.space
        self._op_latency_cache: dict[tuple, torch.Tensor] = {}
        self._log_table = torch.log(self.table.clamp(min=1e-9))
        self._grid = torch.log(torch.tensor(self.channels, dtype=torch.float64))
        self._res = torch.tensor(self.resolutions, dtype=torch.float64)
        self._kinds = torch.tensor(
            [[int(sp.is_down(bt, e)) for e in sp.edges] for bt in BLOCK_TYPES]
        )

    def to(self, device: torch.device | str) -> LUTPredictor:
        """Stays on the CPU: the table is indexed there (a handful of gathers per step) and
        the latencies go to the features' device."""
        return self

    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        return self.edge_latencies(X).sum(dim=-1)

    def predict_shapes(
        self,
        alphas: torch.Tensor,
        block_type: str,
        channels: Sequence[int],
        resolutions: Sequence[int],
    ) -> torch.Tensor:
        """As :meth:`Predictor.predict_shapes`, from :meth:`edge_latencies_at`: a softmax and
        a product on α's device, nothing read back to the host."""
        return self.edge_latencies_at(alphas, block_type, channels, resolutions).sum(dim=-1)

    def edge_latencies_at(
        self,
        alphas: torch.Tensor,
        block_type: str,
        channels: Sequence[int],
        resolutions: Sequence[int],
    ) -> torch.Tensor:
        """:meth:`edge_latencies` of :meth:`predict_shapes`'s rows, ``(n, E)``, each shape's op
        latencies looked up once (the lookup indexes the table on the CPU) and kept on α's
        device."""
        if not alphas.is_floating_point():
            alphas = alphas.double()
        key = (block_type, tuple(channels), tuple(resolutions), alphas.device, alphas.dtype)
        if key not in self._op_latency_cache:
            zeros = torch.zeros(self.space.alpha_shape, dtype=torch.float64)
            rows = [
                encode(self.space, block_type, c, r, zeros) for c, r in zip(*key[1:3], strict=True)
            ]
            with torch.inference_mode(False):
                L = self.op_latencies(torch.stack(rows)).to(alphas.device, alphas.dtype)
            self._op_latency_cache[key] = L
        probs = probabilities(self.space, block_type, alphas, check_values=False)
        return (probs * self._op_latency_cache[key]).sum(dim=-1)

    def edge_latencies(self, X: torch.Tensor) -> torch.Tensor:
        """Each edge's expected op-table latency ``Σ_i p_i·L(op_i)`` in ms: ``(..., E)``."""
        sp = self.space
        probs = X[..., 2:-1].reshape(*X.shape[:-1], sp.num_edges, sp.max_ops)
        return (probs * self.op_latencies(X)).sum(dim=-1)

    def op_latencies(self, X: torch.Tensor) -> torch.Tensor:
        """Each op's table latency ``L(op_i)`` (ms) at each row's block type, channels and
        resolution: ``(..., E, K)``, on ``X``'s device (padded slots finite, weighted 0)."""
        sp = self.space
        batch = X.shape[:-1]
        X = X.reshape(-1, X.shape[-1])
        dev = X.device
        bt = (X[:, 0] < 0.5).long().cpu()  # 0 normal, 1 reduction
        match = X[:, -1:].detach().cpu().double() == self._res[None, :]
        if not match.any(dim=1).all():
            bad = float(X[~match.any(dim=1).to(dev), -1][0])
            raise InputError(f"the op table has no resolution {bad:g} (has {self.resolutions})")
        res_idx = match.double().argmax(dim=1)
        needs_down = bt == 1
        ok = self.present[bt, 0, res_idx] & (~needs_down | self.present[bt, 1, res_idx])
        if not ok.all():
            i = int(torch.nonzero(~ok)[0])
            raise InputError(
                f"the op table has no {BLOCK_TYPES[int(bt[i])]} blocks at resolution "
                f"{self.resolutions[int(res_idx[i])]}; run `lenna measure-ops` for them"
            )
        grid = self._grid
        logc = torch.log(X[:, 1].detach().cpu().double())
        if len(grid) > 1:
            hi = torch.searchsorted(grid, logc).clamp(1, len(grid) - 1)
            lo = hi - 1
            w = ((logc - grid[lo]) / (grid[hi] - grid[lo])).clamp(0, 1)
        else:
            hi = lo = torch.zeros_like(bt)
            w = torch.zeros_like(logc)
        kinds = self._kinds[bt]  # (n, E)
        t = self._log_table
        idx_b, idx_r = bt[:, None], res_idx[:, None]
        t_lo = t[idx_b, kinds, idx_r, lo[:, None]]  # (n, E, K)
        t_hi = t[idx_b, kinds, idx_r, hi[:, None]]
        w = w[:, None, None]
        L = torch.exp((1 - w) * t_lo + w * t_hi).to(dev, X.dtype)
        return L.reshape(*batch, sp.num_edges, sp.max_ops)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return (
            {"table": self.table, "present": self.present},
            {"channels": self.channels, "resolutions": self.resolutions},
        )

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Any
    ) -> None:
        self.table, self.present = tensors["table"], tensors["present"]
        self.channels, self.resolutions = params["channels"], params["resolutions"]
        self._prepare()
