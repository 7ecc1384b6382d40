"""Training data for predictors: encoded features and labels of one dataset file.

Features come from :func:`lenna.space.encode` applied to each row's stored α, the same
logits the gates sampled from when the label was measured.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lenna.errors import InputError
from lenna.measure.store import Dataset
from lenna.space import SearchSpace, encode, get_space


@dataclass
class LatencyData:
    """Rows of one dataset: ``X`` (n, F) encoded features, ``y`` (n,) milliseconds."""

    space: SearchSpace
    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    onehot: np.ndarray  # bool: every edge's distribution is one-hot (a derived architecture)
    fingerprint: dict
    identity: str  # hash of the file's config + rows: "is this the same dataset?"
    op_table: pd.DataFrame

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


def load_data(path: str | Path, space: str | None = None) -> LatencyData:
    """Read a dataset file; refuses an empty file, NaN labels, or another space than ``space``."""
    with Dataset.open(path) as ds:
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
    lat = pd.to_numeric(df["latency_ms"], errors="coerce").astype(float)
    if not np.isfinite(lat).all():
        bad = df.loc[~np.isfinite(lat), "sample_index"].tolist()
        raise InputError(f"{path} has NaN/inf labels (sample ids {bad[:5]})")
    X = np.stack(
        [
            encode(sp, r.block_type, r.channels, r.resolution, np.asarray(r.alphas))
            for r in df.itertuples()
        ]
    )
    probs = X[:, 2:-1].reshape(len(df), sp.num_edges, sp.max_ops)
    mask = sp.op_mask("normal")[None] | sp.op_mask("reduction")[None]
    onehot = (np.where(mask, probs, 1.0).max(axis=2) == 1.0).all(axis=1)
    h = hashlib.sha256()
    h.update(str(meta.get("config")).encode())
    h.update(df[["sample_index", "latency_ms"]].to_numpy().tobytes())
    return LatencyData(
        sp,
        df["sample_index"].to_numpy(),
        X,
        df["latency_ms"].to_numpy(float),
        onehot,
        meta.get("fingerprint", {}),
        h.hexdigest()[:16],
        ops,
    )
