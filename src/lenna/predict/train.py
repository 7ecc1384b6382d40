"""Train and evaluate: the functions ``lenna train`` and ``lenna evaluate`` wrap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lenna.errors import InputError
from lenna.predict.base import Predictor, predictor_class
from lenna.predict.data import LatencyData, load_data
from lenna.predict.metrics import metrics
from lenna.predict.splits import make_split

EVAL_SPLITS = ("held_out", "extrapolation", "one_hot")


def train_predictor(
    data: LatencyData | str | Path, kind: str, seed: int = 0, split: str = "random", **hparams: Any
) -> Predictor:
    """Fit a model of ``kind`` on the training split of ``data``; held-out metrics in ``info``."""
    cls = predictor_class(kind)
    if not isinstance(data, LatencyData):
        data = load_data(data)
    sp = make_split(data, split, seed)
    model = cls(data.space, seed=seed, **hparams).fit(data, sp)
    model.info["split_kind"] = split
    model.info["metrics"] = evaluate_model(model, data)
    return model


def held_out_rows(model: Predictor, data: LatencyData) -> np.ndarray:
    """Rows this model never saw. In its own dataset's lineage (same blocks under the same
    ids, see :func:`~lenna.predict.data.lineage`), every row outside its training and
    validation ids, so rows added after training count too; in any other dataset, all rows."""
    if model.info.get("dataset_identity") != data.identity:
        return np.ones(len(data), bool)
    split = model.info["split"]
    return ~np.isin(data.ids, np.concatenate([split["train"], split["val"]]))


def split_masks(model: Predictor, data: LatencyData) -> dict[str, np.ndarray]:
    """The three evaluation splits, each a subset of the held-out rows.

    ``extrapolation``: held-out rows with channels above the 90th percentile of the channels
    the model trained on (with ``--split channels`` these lie beyond anything it saw);
    ``one_hot``: held-out rows whose α is one-hot (derived architectures).
    """
    held = held_out_rows(model, data)
    hi = model.info.get("ranges", {}).get("channels", [0, np.inf])[1]
    train_ids = model.info.get("split", {}).get("train", [])
    train_c = data.channels[np.isin(data.ids, train_ids)]
    p90 = np.quantile(train_c, 0.9) if len(train_c) else hi
    return {
        "held_out": held,
        "extrapolation": held & (data.channels > p90),
        "one_hot": held & data.onehot,
    }


def evaluate_model(model: Predictor, data: LatencyData) -> dict[str, dict[str, float]]:
    """Metrics of ``model`` on each evaluation split of ``data``."""
    if data.space.name != model.space.name:
        raise InputError(
            f"model of space {model.space.name!r} cannot be evaluated on {data.space.name!r} data"
        )
    out = {}
    for name, mask in split_masks(model, data).items():
        y = data.y[mask]
        out[name] = metrics(y, model.predict_features(data.X[mask]) if mask.any() else y)
    return out
