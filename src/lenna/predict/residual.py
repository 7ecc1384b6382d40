"""``lut+mlp``: the additive table plus a learned correction (best with few labels).

The op table already knows how each op's cost grows with channels and resolution; what it
misses are the block's own overheads and interactions (node sums, preprocessing, cache
effects between ops). So the MLP sees the usual features *and* each edge's expected
op-table latency ``Σ_i p_i·L(op_i)`` (log ms), and predicts ``log(y) − log(LUT(x))``:
``ŷ = LUT(x) · exp(mlp(x))``. Differentiable in α through both parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lenna.predict.base import Predictor, register_predictor
from lenna.predict.data import LatencyData
from lenna.predict.lut import LUTPredictor
from lenna.predict.mlp import DEFAULTS, build_mlp, train_log_target
from lenna.predict.preprocess import Scaler, num_derived

EPS_MS = 1e-4


@register_predictor
class ResidualPredictor(Predictor):
    kind = "lut+mlp"
    defaults = DEFAULTS
    differentiable = True

    def _features(self, X: torch.Tensor, edge_ms: torch.Tensor | None = None) -> torch.Tensor:
        e = torch.log((self.lut.edge_latencies(X) if edge_ms is None else edge_ms) + EPS_MS)
        return torch.cat([self.scaler(X), (e - self.e_mean.to(e)) / self.e_std.to(e)], dim=-1)

    def _offset(self, X: torch.Tensor, edge_ms: torch.Tensor | None = None) -> torch.Tensor:
        e = self.lut.edge_latencies(X) if edge_ms is None else edge_ms
        return torch.log(e.sum(dim=-1) + EPS_MS)

    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        hp = self._hp()
        self.lut = LUTPredictor(self.space)
        self.lut._fit(train, val)
        self.scaler = Scaler(self.space).fit(train.X)
        with torch.no_grad():
            e = torch.log(self.lut.edge_latencies(torch.as_tensor(train.X)) + EPS_MS)
        self.e_mean, self.e_std = e.mean(0), e.std(0).clamp(min=1e-6)
        self.net = build_mlp(num_derived(self.space) + self.space.num_edges, hp["hidden"])
        self.info["training"] = train_log_target(
            self.net, self._features, self._offset, train, val, hp, self.seed
        )

    def forward_features(
        self, X: torch.Tensor, edge_ms: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``edge_ms``: the table's edge latencies of ``X`` where the caller has them."""
        X64 = X.to(torch.float64)
        e = self.lut.edge_latencies(X64) if edge_ms is None else edge_ms.to(torch.float64)
        out = self._offset(X64, e) + self.net(self._features(X64, e)).squeeze(-1)
        return torch.exp(out).to(X.dtype)

    def predict_shapes(
        self,
        alphas: torch.Tensor,
        block_type: str,
        channels: Sequence[int],
        resolutions: Sequence[int],
    ) -> torch.Tensor:
        """As :meth:`Predictor.predict_shapes`, with the table's part from its per-shape cache
        (:meth:`LUTPredictor.edge_latencies_at`): nothing read back to the host."""
        X = self.shape_features(alphas, block_type, channels, resolutions)
        e = self.lut.edge_latencies_at(alphas, block_type, channels, resolutions)
        return self.forward_features(X, e).reshape(X.shape[:-1])

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        lut_t, lut_p = self.lut.state()
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update({f"lut.{k}": v for k, v in lut_t.items()})
        tensors.update({**self.scaler.tensors(), "edge.mean": self.e_mean, "edge.std": self.e_std})
        return tensors, {"hidden": self._hp()["hidden"], "lut": lut_p}

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Any
    ) -> None:
        self.lut = LUTPredictor(self.space)
        self.lut.load_state(
            {k[4:]: v for k, v in tensors.items() if k.startswith("lut.")}, params["lut"], folder
        )
        self.scaler = Scaler.from_tensors(self.space, tensors)
        self.e_mean, self.e_std = tensors["edge.mean"], tensors["edge.std"]
        n_in = num_derived(self.space) + self.space.num_edges
        self.net = build_mlp(n_in, params["hidden"])
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net.eval()
