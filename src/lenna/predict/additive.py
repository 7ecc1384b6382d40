"""``additive``: the additive model's structure, with the op costs learned from block labels.

A label is an expectation over paths, and a path's latency is close to the sum of its ops,
so ``E[L] ≈ Σ_e Σ_i p_ei · L_i(kind_e, C, H) + overhead(C, H)`` holds for *any* α. The op
table measures each ``L_i`` alone, which misses what an op costs inside a block (dispatch,
cache, the node sums). Here a small MLP maps (block type, log C, log H) to the log cost of
every op on a keep-resolution and on a downsampling edge, plus the block's own overhead;
each edge also gets a learned scale. The prediction is linear in the probabilities, so it is
exact wherever latency is additive, differentiable in α, and needs no op table.

``edge_scale="shaped"`` lets each edge's scale depend on (block type, C, H) too (the MLP
gets ``E`` more outputs): edges that see other channel counts or resolutions than their
kind's curve assumes (node concatenations, the reduction's later nodes) can then differ by
shape, at the price of more to fit. ``"constant"`` (default) keeps one scale per edge.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lenna.errors import InputError
from lenna.predict.base import Predictor, register_predictor
from lenna.predict.data import LatencyData
from lenna.predict.mlp import train_log_target
from lenna.space import SearchSpace

DEFAULTS = {
    "hidden": [64, 64],
    "lr": 3e-3,
    "weight_decay": 0.0,
    "epochs": 2000,
    "patience": 200,
    "batch_size": 64,
    "edge_scale": "constant",
}
EDGE_SCALES = ("constant", "shaped")


class AdditiveNet(nn.Module):
    """Encoded rows ``(n, F)`` → log ms ``(n, 1)`` (see module docstring)."""

    def __init__(self, space: SearchSpace, hidden: list[int], edge_scale: str = "constant") -> None:
        super().__init__()
        E, K = space.num_edges, space.max_ops
        self.E, self.K, self.shaped = E, K, edge_scale == "shaped"
        down = [float(space.is_down("reduction", e)) for e in space.edges]
        self.register_buffer("down", torch.tensor(down, dtype=torch.float64))
        self.register_buffer("shift", torch.zeros(3, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(3, dtype=torch.float64))
        layers: list[nn.Module] = []
        n_in = 3
        for h in hidden:
            layers += [nn.Linear(n_in, h), nn.SiLU()]
            n_in = h
        layers.append(nn.Linear(n_in, 2 * K + 1 + (E if self.shaped else 0)))
        self.curves = nn.Sequential(*layers).double()
        self.edge_log_scale = nn.Parameter(torch.zeros(E, dtype=torch.float64))

    def shape_inputs(self, X: torch.Tensor) -> torch.Tensor:
        raw = torch.cat([X[..., :1], torch.log(X[..., 1:2]), torch.log(X[..., -1:])], dim=-1)
        return (raw - self.shift) / self.scale

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        E, K = self.E, self.K
        probs = X[..., 2:-1].reshape(*X.shape[:-1], E, K)
        out = self.curves(self.shape_inputs(X))  # (..., 2K + 1) log ms
        same, down, overhead = out[..., :K], out[..., K : 2 * K], out[..., 2 * K]
        edge_scale = self.edge_log_scale + (out[..., 2 * K + 1 :] if self.shaped else 0.0)
        is_down = self.down * (1 - X[..., :1])  # (..., E): downsampling only in reductions
        cost = torch.where(is_down[..., None] > 0.5, down[..., None, :], same[..., None, :])
        cost = torch.exp(cost + edge_scale[..., None])  # (..., E, K) ms
        total = (probs * cost).sum(dim=(-1, -2)) + torch.exp(overhead)
        return torch.log(total)[..., None]


@register_predictor
class AdditivePredictor(Predictor):
    kind = "additive"
    differentiable = True

    def _hp(self) -> dict[str, Any]:
        return {**DEFAULTS, **self.hparams}

    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        hp = self._hp()
        if hp["edge_scale"] not in EDGE_SCALES:
            raise InputError(
                f"edge_scale must be one of {', '.join(EDGE_SCALES)}, got {hp['edge_scale']!r}"
            )
        self.net = AdditiveNet(self.space, hp["hidden"], hp["edge_scale"])
        X = torch.as_tensor(train.X)
        raw = torch.cat([X[:, :1], torch.log(X[:, 1:2]), torch.log(X[:, -1:])], dim=-1)
        self.net.shift.copy_(raw.mean(0))
        self.net.scale.copy_(torch.where(raw.std(0) > 1e-12, raw.std(0), torch.ones(3)))
        with torch.no_grad():  # start near the data: each op and the overhead ~ y / (E + 1)
            start = torch.log(torch.as_tensor(train.y).mean() / (self.space.num_edges + 1))
            self.net.curves[-1].bias[: 2 * self.space.max_ops + 1].fill_(float(start))
            self.net.curves[-1].bias[2 * self.space.max_ops + 1 :].zero_()
        self.info["training"] = train_log_target(
            self.net, lambda X: X, None, train, val, hp, self.seed
        )

    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.net(X.to(torch.float64)).squeeze(-1)).to(X.dtype)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        hp = self._hp()
        return dict(self.net.state_dict()), {"hidden": hp["hidden"], "edge_scale": hp["edge_scale"]}

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Any
    ) -> None:
        edge_scale = params.get("edge_scale", "constant")  # models saved before the option
        if edge_scale not in EDGE_SCALES:
            raise InputError(f"unknown edge_scale {edge_scale!r} in the model file")
        self.net = AdditiveNet(self.space, params["hidden"], edge_scale)
        self.net.load_state_dict(tensors)
        self.net.eval()
