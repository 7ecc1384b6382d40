"""Feature preprocessing, fitted on the training split only and stored with the model.

From the encoded vector (``lenna.space.encode``) the learned models see: ``is_normal``,
log(channels), log(resolution), every edge's probabilities, and each op's *expected count*
in the block (Σ over edges of its probability, separately for downsampling edges). Latency
is close to additive over ops, so the counts make that structure easy to learn from a few
hundred samples. Every column is then standardised with the training split's mean and
spread. One torch implementation serves numpy callers too, so the search and the evaluation
see the same numbers, with gradients to α.
"""

from __future__ import annotations

import numpy as np
import torch

from lenna.space import SearchSpace


def derived_features(space: SearchSpace, X: torch.Tensor) -> torch.Tensor:
    """``(..., F) -> (..., F + 2K)``: logs of channels/resolution, probabilities, op counts."""
    E, K = space.num_edges, space.max_ops
    probs = X[..., 2:-1].reshape(*X.shape[:-1], E, K)
    down = torch.tensor(
        [space.is_down("reduction", e) for e in space.edges], dtype=X.dtype, device=X.device
    )
    down = down * (1 - X[..., :1])  # (..., E): only reduction blocks have downsampling edges
    count_down = (probs * down[..., None]).sum(-2)
    count_same = probs.sum(-2) - count_down
    return torch.cat(
        [
            X[..., :1],
            torch.log(X[..., 1:2]),
            torch.log(X[..., -1:]),
            X[..., 2:-1],
            count_same,
            count_down,
        ],
        dim=-1,
    )


def num_derived(space: SearchSpace) -> int:
    return 3 + space.num_edges * space.max_ops + 2 * space.max_ops


class Scaler:
    """Standardise :func:`derived_features`; constant columns get spread 1."""

    def __init__(
        self, space: SearchSpace, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ) -> None:
        self.space, self.mean, self.std = space, mean, std

    def fit(self, X: np.ndarray) -> Scaler:
        Z = derived_features(self.space, torch.as_tensor(X, dtype=torch.float64))
        self.mean = Z.mean(0)
        std = Z.std(0)
        self.std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return self

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        return (derived_features(self.space, X) - self.mean.to(X)) / self.std.to(X)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"scaler.mean": self.mean, "scaler.std": self.std}

    def to_device(self, device: torch.device | str) -> None:
        self.mean, self.std = self.mean.to(device), self.std.to(device)

    @classmethod
    def from_tensors(cls, space: SearchSpace, t: dict[str, torch.Tensor]) -> Scaler:
        return cls(space, t["scaler.mean"], t["scaler.std"])
