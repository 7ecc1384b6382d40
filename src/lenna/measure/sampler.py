"""Which blocks to measure: a seeded, documented mixture over the simplex of every edge.

Sample ``i`` of a run with seed ``s`` depends only on ``(s, i)`` (its own random stream), so a
resumed or distributed run measures exactly the samples an uninterrupted one would have.

α regimes (one per sample, drawn with these weights):

=============  ======  =================================================================
regime         weight  logits per edge
=============  ======  =================================================================
``seed``       0.15    U(0, 1), as the seed drew them: nearly uniform probabilities
``uniform``    0.15    N(0, 0.3²): early search, close to uniform
``dirichlet``  0.30    log of Dirichlet(a), a log-uniform in [0.05, 3]: the whole simplex,
                       from sparse corners (small a) to the flat middle (large a)
``peaked``     0.20    N(0, 1) plus a boost U(2, 8) on one op: late search
``onehot``     0.20    0 on one op, −1e4 elsewhere: exactly one-hot, a derived architecture
=============  ======  =================================================================

Channels are log-uniform integers in ``[min, max]``; resolution and block type are uniform
over their lists (a reduction block is never paired with an odd resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lenna.errors import InputError
from lenna.space import SearchSpace

REGIMES = {"seed": 0.15, "uniform": 0.15, "dirichlet": 0.30, "peaked": 0.20, "onehot": 0.20}
ONEHOT_OFF = -1e4  # finite, yet exp(-1e4) == 0 in float64: softmax is exactly one-hot


@dataclass(frozen=True)
class SampleSpec:
    """One block to measure. ``index`` is stable: the same (seed, index) gives the same spec."""

    index: int
    block_type: str
    channels: int
    resolution: int
    regime: str
    alphas: np.ndarray


@dataclass(frozen=True)
class Sampler:
    """Draws :class:`SampleSpec` for ``space`` from the documented mixture."""

    space: SearchSpace
    channels: tuple[int, int] = (8, 128)
    resolutions: tuple[int, ...] = (32, 16, 8)
    block_types: tuple[str, ...] = ("normal", "reduction")
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.channels
        if lo < 1 or hi < lo:
            raise InputError(f"channels range must be MIN:MAX with 1 <= MIN <= MAX, got {lo}:{hi}")
        if not self.resolutions or not self.block_types:
            raise InputError("need at least one resolution and one block type")
        for bt in self.block_types:
            self.space.check_block_type(bt)
        for r in self.resolutions:
            self.space.check("normal", 1, r)
        if not self._pairs():
            raise InputError("no valid (block type, resolution) pair: reductions need even sizes")

    def _pairs(self) -> list[tuple[str, int]]:
        return [
            (bt, r)
            for bt in self.block_types
            for r in self.resolutions
            if not (bt == "reduction" and r % 2)
        ]

    def __call__(self, index: int) -> SampleSpec:
        rng = np.random.default_rng([self.seed, index])
        pairs = self._pairs()
        bt, res = pairs[rng.integers(len(pairs))]
        lo, hi = self.channels
        ch = int(min(hi, math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))))
        names = list(REGIMES)
        regime = names[rng.choice(len(names), p=list(REGIMES.values()))]
        return SampleSpec(index, bt, ch, res, regime, self.alphas(rng, bt, regime))

    def alphas(self, rng: np.random.Generator, block_type: str, regime: str) -> np.ndarray:
        """Logits ``(num_edges, max_ops)`` for one block; padded slots are 0 (ignored)."""
        mask = self.space.op_mask(block_type)
        out = np.zeros(self.space.alpha_shape)
        for e in range(self.space.num_edges):
            k = int(mask[e].sum())
            out[e, :k] = _edge_logits(rng, regime, k)
        return out


def _edge_logits(rng: np.random.Generator, regime: str, k: int) -> np.ndarray:
    if regime == "seed":
        return rng.uniform(0.0, 1.0, k)
    if regime == "uniform":
        return rng.normal(0.0, 0.3, k)
    if regime == "dirichlet":
        a = math.exp(rng.uniform(math.log(0.05), math.log(3.0)))
        return np.log(np.maximum(rng.dirichlet(np.full(k, a)), 1e-12))
    if regime == "peaked":
        z = rng.normal(0.0, 1.0, k)
        z[rng.integers(k)] += rng.uniform(2.0, 8.0)
        return z
    z = np.full(k, ONEHOT_OFF)
    z[rng.integers(k)] = 0.0
    return z
