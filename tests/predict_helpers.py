"""Shared helpers for the predictor tests: cached synthetic datasets and small trained models.

Everything is tiny on purpose (a few hundred synthetic rows, small networks, few epochs) so
the predictor tests stay fast on one core. Datasets and models are cached for the whole
test process; tests must treat them as read-only (copy a file before changing it, save a
model to ``tmp_path`` before editing its folder).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from synthetic import make_synthetic

from lenna.predict import Predictor, load_data, train_predictor
from lenna.predict.data import LatencyData

KINDS = ("lut", "elasticnet", "mlp", "gbdt", "lut+mlp", "additive")
DIFFERENTIABLE = ("lut", "elasticnet", "mlp", "lut+mlp", "additive")

# Small hyper-parameters: enough to exercise training, quick on one core.
SMALL_HP: dict[str, dict] = {
    "lut": {},
    "elasticnet": {},
    "mlp": {"hidden": [16], "epochs": 30, "patience": 10},
    "additive": {"hidden": [8], "epochs": 30, "patience": 10},
    "gbdt": {"n_estimators": 50},
    "lut+mlp": {"hidden": [16], "epochs": 30, "patience": 10},
}

_ROOT = Path(tempfile.mkdtemp(prefix="lenna-predict-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


def synthetic_db(n: int = 300, seed: int = 0, space: str = "lenna") -> Path:
    """A cached synthetic dataset file (read-only: copy it before changing it)."""
    return _synthetic_db(n, seed, space)


def synthetic_data(n: int = 300, seed: int = 0, space: str = "lenna") -> LatencyData:
    """The cached :class:`LatencyData` of :func:`synthetic_db` (read-only)."""
    return _synthetic_data(n, seed, space)


@lru_cache
def _synthetic_db(n: int, seed: int, space: str) -> Path:
    folder = _ROOT / f"{space}-{n}-{seed}"
    folder.mkdir()
    return make_synthetic(folder / "d.db", space_name=space, n=n, seed=seed)


@lru_cache
def _synthetic_data(n: int, seed: int, space: str) -> LatencyData:
    return load_data(_synthetic_db(n, seed, space))


@lru_cache
def small_model(kind: str) -> Predictor:
    """A model of ``kind`` trained with :data:`SMALL_HP` on the default synthetic dataset."""
    torch.set_num_threads(1)
    return train_predictor(synthetic_data(), kind, seed=0, **SMALL_HP[kind])


def copy_db(src: Path, dest: Path) -> Path:
    shutil.copy(src, dest)
    return dest


def edit_json(path: Path, edit) -> None:
    """Apply ``edit(meta)`` to a JSON file in place."""
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def drop_param(folder: Path, key: str) -> None:
    """Remove ``key`` from a saved model's params and hparams: a model saved before the option."""

    def edit(meta: dict) -> None:
        meta["params"].pop(key)
        meta["hparams"].pop(key, None)

    edit_json(folder / "model.json", edit)


def random_alphas(space, *batch: int, seed: int = 0) -> torch.Tensor:
    """float64 logits of shape ``(*batch, E, K)`` (padded slots hold values too)."""
    g = np.random.default_rng(seed)
    return torch.as_tensor(g.normal(size=(*batch, *space.alpha_shape)), dtype=torch.float64)
