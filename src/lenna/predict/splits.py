"""Seeded splits: the same seed and data give the same train/validation/test ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lenna.errors import InputError
from lenna.predict.data import LatencyData

SPLITS = ("random", "channels")


@dataclass
class Split:
    train: np.ndarray  # sample ids
    val: np.ndarray
    test: np.ndarray


def make_split(
    data: LatencyData, kind: str = "random", seed: int = 0, test: float = 0.2, val: float = 0.1
) -> Split:
    """``random``: shuffled ids. ``channels``: rows above the 90th percentile of channels all go
    to test (extrapolation); the rest is split at random."""
    if kind not in SPLITS:
        raise InputError(f"unknown split {kind!r}; expected one of: {', '.join(SPLITS)}")
    if len(data) < 3:
        raise InputError(f"need at least 3 samples to train and hold some out, got {len(data)}")
    rng = np.random.default_rng(seed)
    ids = data.ids.copy()
    forced = np.zeros(len(ids), bool)
    if kind == "channels":
        forced = data.channels > np.quantile(data.channels, 0.9)
    rest = rng.permutation(ids[~forced])
    n_test = max(1, round(test * len(ids)) - int(forced.sum()))
    n_val = max(1, round(val * len(ids)))
    if n_test + n_val >= len(rest):
        raise InputError(f"too few samples ({len(ids)}) for a train/validation/test split")
    return Split(
        train=np.sort(rest[n_test + n_val :]),
        val=np.sort(rest[n_test : n_test + n_val]),
        test=np.sort(np.concatenate([ids[forced], rest[:n_test]])),
    )
