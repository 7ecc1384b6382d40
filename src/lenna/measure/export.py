"""Dataset export for sharing: Parquet or CSV, with the encoded features as columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lenna.atomic import missing_folder, write_with
from lenna.errors import InputError
from lenna.measure.store import Dataset
from lenna.space import SearchSpace, encode, get_space

FORMATS = (".parquet", ".csv")


def encode_rows(space: SearchSpace, df: pd.DataFrame, source: object = "") -> np.ndarray:
    """Encoded features ``(n, F)`` of dataset rows, from each row's stored α; a row that
    cannot be encoded is one line naming ``source`` (the file) and the row."""
    X = []
    for r in df.itertuples():
        try:
            X.append(encode(space, r.block_type, r.channels, r.resolution, np.asarray(r.alphas)))
        except InputError as e:
            raise InputError(f"{source}, sample {r.sample_index}: {e}") from None
    return np.stack(X) if X else np.zeros((0, space.num_features))


def to_frame(ds: Dataset) -> pd.DataFrame:
    """One row per sample: stored columns (α as JSON text) + ``f:<name>`` feature columns."""
    space = get_space(ds.meta["space"])
    df = ds.samples()
    feats = encode_rows(space, df, ds.path)
    out = df.drop(columns=["trace"]).copy()
    out["alphas"] = out["alphas"].map(json.dumps)
    out["device"] = out["device"].astype("string")  # text even when empty (a local run's file)
    return pd.concat(
        [out, pd.DataFrame(feats, columns=[f"f:{n}" for n in space.feature_names()])], axis=1
    )


def export(ds: Dataset, dest: str | Path) -> int:
    """Write the samples to ``dest`` (.parquet or .csv); returns the number of rows."""
    dest = Path(dest)
    if dest.suffix not in FORMATS:
        raise InputError(f"export to {dest.name!r}: expected a file ending in .parquet or .csv")
    if not dest.parent.exists():
        raise InputError(missing_folder(dest.parent))
    df = to_frame(ds)
    if dest.suffix == ".parquet":
        meta = {"lenna": json.dumps(ds.meta)}
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        write_with(dest, lambda tmp: pq.write_table(table, tmp))
    else:
        write_with(dest, lambda tmp: df.to_csv(tmp, index=False))
    return len(df)
