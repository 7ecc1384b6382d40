"""Which blocks to measure: a seeded, documented mixture over the simplex of every edge.

Sample ``i`` of a run with seed ``s`` depends only on ``(s, i)`` (its own random stream), so a
resumed or distributed run measures exactly the samples an uninterrupted one would have.

α regimes (one per sample, drawn with these weights; sampler versions 2 to 4, 3 the default):

================  ======  ==============================================================
regime            weight  logits per edge
================  ======  ==============================================================
``seed``          0.10    U(0, 1), as the seed drew them: nearly uniform probabilities
``uniform``       0.10    N(0, 0.3²): early search, close to uniform
``dirichlet``     0.20    log of Dirichlet(a), a log-uniform in [0.05, 3]: the whole simplex,
                          from sparse corners (small a) to the flat middle (large a)
``peaked``        0.10    N(0, 1) plus a boost U(2, 8) on one op: late search
``onehot``        0.10    0 on one op, −1e4 elsewhere: one-hot, any op on every edge
``derived``       0.25    one-hot on a cell the space's derive rule can output
                          (:func:`~lenna.space.derive.random_cell`; for ``darts``: two
                          inputs per node, ``none`` on the other edges): what a search
                          returns, and so the number the user acts on
``near_derived``  0.15    N(0, 1) plus a boost U(2, 8) on such a cell's op on every edge
                          (``none`` on its dropped edges): α at the end of a search
================  ======  ==============================================================

Version 1 (files begun before version 2) had no ``derived`` or ``near_derived`` regime
(seed 0.15, uniform 0.15, dirichlet 0.30, peaked 0.20, onehot 0.20). In ``darts`` its
one-hot rows hardly ever looked like a derived cell (about 1.75 ``none`` edges of 14; a
derived cell has 6). A file stores its sampler version and resumes with it.

Channels are log-uniform integers in ``[min, max]``; resolution and block type are uniform
over their lists (a reduction block is never paired with an odd resolution). Version 3 then
moves half the samples (a seeded draw of their own) to a *network width*: a multiple of 8 in
the range, log-uniform over those multiples. A network's cells run at such widths (its width
doubled at each reduction), which the log-uniform draw over every integer gives rarely (C = 64:
about 1 row in 150), and kernels there run faster than their neighbours suggest, so a model
trained on version 2 rows read derived cells at those widths high
(``benchmarks/diagnostics/network_widths.py``). Sample ``i``'s block type, resolution, regime
and α are the same in versions 2 and 3.

Version 4 keeps version 3's draws except the α of a ``derived`` or ``near_derived`` row (in
``darts`` its kept edges too, as the random stream shifts): each such cell first draws its
share of parameter-free ops q ~ U(0, 1) (stride-1 pools and identities;
:mod:`lenna.space.op_kinds`), and each kept edge is parameter-free with probability q. A
uniform op draw puts about a quarter (``lenna``) or three sevenths (``darts``) of a cell's
edges on such ops and almost never most of them, yet a latency term steers a search exactly
there (mostly pools and skips) and an accuracy term to the other corner (all convolutions).
Measured in full, it took the worst derived cell of the eager trade-off runs from +33/+34 %
to +20/+26 % and cells of mostly cheap ops from 54–86 % to 71–93 % within ±10 %
(benchmarks/HISTORY.md, "Sampler version 4"). It is the default for a new ONNX Runtime
file only: there it did as well elsewhere, while in eager mode it cost uniformly drawn
derived cells up to 8 points, and the quick demo's 24-row dataset drawn by it missed its
budget by 13–22 % where version 3's met it (``--sampler-version`` chooses either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lenna.errors import InputError
from lenna.space import SearchSpace, cell_alphas, random_cell
from lenna.space.derive import OFF as ONEHOT_OFF  # exp(-1e4) == 0 in float64: exactly one-hot

SAMPLER_VERSIONS: dict[int, dict[str, float]] = {
    1: {"seed": 0.15, "uniform": 0.15, "dirichlet": 0.30, "peaked": 0.20, "onehot": 0.20},
    2: {
        "seed": 0.10,
        "uniform": 0.10,
        "dirichlet": 0.20,
        "peaked": 0.10,
        "onehot": 0.10,
        "derived": 0.25,
        "near_derived": 0.15,
    },
}
SAMPLER_VERSIONS[3] = SAMPLER_VERSIONS[2]  # 3: the regimes of 2, half the widths a network's
SAMPLER_VERSIONS[4] = SAMPLER_VERSIONS[3]  # 4: 3, derived cells with a drawn parameter-free share
NETWORK_WIDTH_SHARE = {1: 0.0, 2: 0.0, 3: 0.5, 4: 0.5}
NETWORK_WIDTH_STEP = 8
_WIDTH_STREAM = 8  # the width draw's own random stream: (seed, index, _WIDTH_STREAM)
SAMPLER_VERSION = 3  # what a new eager dataset uses (see the module docstring)
SAMPLER_VERSION_ORT = 4  # what a new ONNX Runtime dataset uses
REGIMES = SAMPLER_VERSIONS[SAMPLER_VERSION]


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
    version: int = SAMPLER_VERSION

    def __post_init__(self) -> None:
        if self.version not in SAMPLER_VERSIONS:
            raise InputError(
                f"unknown sampler version {self.version!r}; this LENNA knows "
                f"{', '.join(map(str, SAMPLER_VERSIONS))} (a newer LENNA wrote the file?)"
            )
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
        weights = SAMPLER_VERSIONS[self.version]
        names = list(weights)
        regime = names[rng.choice(len(names), p=list(weights.values()))]
        alphas = self.alphas(rng, bt, regime)
        share = NETWORK_WIDTH_SHARE[self.version]
        if share:  # its own stream: every other draw stays that of version 2
            wrng = np.random.default_rng([self.seed, index, _WIDTH_STREAM])
            if wrng.uniform() < share:
                ch = network_width(lo, hi, wrng) or ch
        return SampleSpec(index, bt, ch, res, regime, alphas)

    def alphas(self, rng: np.random.Generator, block_type: str, regime: str) -> np.ndarray:
        """Logits ``(num_edges, max_ops)`` for one block; padded slots are 0 (ignored)."""
        if regime in ("derived", "near_derived"):
            share = rng.uniform() if self.version >= 4 else None
            cell = random_cell(self.space, block_type, rng, free_share=share)
            onehot = cell_alphas(self.space, block_type, cell)
            if regime == "derived":
                return onehot
            return _near(rng, onehot, self.space.op_mask(block_type))
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


def _near(rng: np.random.Generator, onehot: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Late-search α around a derived cell: N(0, 1) noise with a boost U(2, 8) on the cell's
    op of every edge (the same boost as ``peaked``)."""
    out = np.zeros_like(onehot)
    for e in range(onehot.shape[0]):
        k = int(mask[e].sum())
        z = rng.normal(0.0, 1.0, k)
        z[int(np.argmax(onehot[e, :k]))] += rng.uniform(2.0, 8.0)
        out[e, :k] = z
    return out


def network_width(lo: int, hi: int, rng: np.random.Generator) -> int | None:
    """A multiple of :data:`NETWORK_WIDTH_STEP` in ``[lo, hi]``, log-uniform over those
    multiples: each owns the stretch of log C nearest to it, the two ends as far outwards as
    inwards (so the narrowest takes about a fifth of 8–128's draws); None when there is none."""
    step = NETWORK_WIDTH_STEP
    widths = list(range(step * math.ceil(lo / step), hi + 1, step))
    if len(widths) < 2:
        return widths[0] if widths else None
    logs = np.log(widths)
    mids = (logs[1:] + logs[:-1]) / 2
    first, last = logs[0] - (mids[0] - logs[0]), logs[-1] + (logs[-1] - mids[-1])
    x = rng.uniform(first, last)
    return widths[int(np.searchsorted(mids, x, side="right"))]
