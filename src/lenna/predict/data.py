"""Training data for predictors: encoded features and labels of one dataset file.

Features come from :func:`lenna.space.encode` applied to each row's stored α, the same
logits the gates sampled from when the label was measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lenna.errors import InputError
from lenna.measure.export import encode_rows
from lenna.measure.run_config import upgrade_config
from lenna.measure.store import Dataset
from lenna.space import SearchSpace, get_space


@dataclass
class LatencyData:
    """Rows of one dataset: ``X`` (n, F) encoded features, ``y`` (n,) milliseconds."""

    space: SearchSpace
    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    onehot: np.ndarray  # bool: every edge's distribution is one-hot (a derived architecture)
    fingerprint: dict
    identity: str  # lineage: same space + sampling config means same blocks under same ids
    op_table: pd.DataFrame
    reference_ms: float | None = None  # the dataset's calibrated reference time (normalised)
    reference: str | None = None  # which reference its labels were timed beside (matched, ...)
    reference_ratios: dict[str, float] | None = None  # its anchors' stored ratios ("CxH")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> LatencyData:
        return LatencyData(
            self.space,
            self.ids[mask],
            self.X[mask],
            self.y[mask],
            self.onehot[mask],
            self.fingerprint,
            self.identity,
            self.op_table,
            self.reference_ms,
            self.reference,
            self.reference_ratios,
        )

    @property
    def channels(self) -> np.ndarray:
        return self.X[:, 1]

    @property
    def resolution(self) -> np.ndarray:
        return self.X[:, -1]

    @property
    def block_types(self) -> np.ndarray:
        return np.where(self.X[:, 0] == 1.0, "normal", "reduction")


def is_onehot(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """Rows whose every edge has one op of probability 1 (padded slots are exactly 0)."""
    probs = X[:, 2:-1].reshape(len(X), space.num_edges, space.max_ops)
    return (probs.max(axis=2) == 1.0).all(axis=1)


def lineage(meta: dict) -> str:
    """Files with the same space and sampling config hold the same blocks under the same ids
    (sample ``i`` is a function of the seed and ``i``), so a model's training ids mean the same
    blocks in any of them, including a file extended after the model was trained."""
    key = json.dumps([meta.get("space_hash"), meta.get("config")], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_data(
    path: str | Path, space: str | None = None, include_flagged: bool = False
) -> LatencyData:
    """Read a dataset file; refuses an empty file, NaN labels, or another space than ``space``.

    Rows the drift guard flagged are left out unless ``include_flagged``.
    """
    with Dataset.open(path, readonly=True) as ds:
        meta = ds.meta
        df = ds.samples()
        ops = ds.op_table()
    name = meta.get("space")
    if space is not None and name != space:
        raise InputError(f"{path} holds the {name!r} space, not {space!r}")
    sp = get_space(name)
    if meta.get("space_hash") != sp.definition_hash():
        raise InputError(f"{path} was measured on another definition of space {name!r}")
    if df.empty:
        raise InputError(f"{path} holds no samples; measure some first (lenna measure)")
    if not include_flagged:
        df = df[df["drift_flag"] == 0].reset_index(drop=True)
        if df.empty:
            raise InputError(f"every sample in {path} is drift-flagged; nothing to train on")
    lat = pd.to_numeric(df["latency_ms"], errors="coerce").astype(float)
    if not np.isfinite(lat).all():
        bad = df.loc[~np.isfinite(lat), "sample_index"].tolist()
        raise InputError(f"{path} has NaN/inf labels (sample ids {bad[:5]})")
    if (lat <= 0).any():  # no block takes no time; a log-scale model would meet infinity
        bad = df.loc[lat <= 0, "sample_index"].tolist()
        raise InputError(f"{path} has labels <= 0 ms (sample ids {bad[:5]}): field latency_ms")
    X = encode_rows(sp, df, path)
    return LatencyData(
        sp,
        df["sample_index"].to_numpy(),
        X,
        lat.to_numpy(),
        is_onehot(sp, X),
        meta.get("fingerprint", {}),
        lineage(meta),
        ops,
        meta.get("reference_ms"),
        # as this version reads the file: one from before anchors used the single reference
        upgrade_config(meta.get("config") or {})["measure"]["reference"],
        meta.get("reference_ratios"),
    )
