"""Gradient-boosted trees (LightGBM): the accuracy reference, NOT differentiable.

Trees are piecewise constant in α, so they cannot steer a gradient-based search; they are
here to show how much accuracy a flexible model can get from the same features. Stored in
LightGBM's own text format (no pickle).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import torch

from lenna.errors import InputError
from lenna.predict.base import Predictor, register_predictor
from lenna.predict.data import LatencyData
from lenna.predict.preprocess import derived_features

DEFAULTS = {
    "n_estimators": 2000,
    "learning_rate": 0.03,
    "num_leaves": 31,
    "min_child_samples": 5,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
}
MODEL_FILE = "model.lgb.txt"


@register_predictor
class GBDTPredictor(Predictor):
    kind = "gbdt"
    defaults = DEFAULTS
    differentiable = False

    def _z(self, X: np.ndarray) -> np.ndarray:
        return derived_features(self.space, torch.as_tensor(X)).numpy()

    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        hp = self._hp()
        model = lgb.LGBMRegressor(
            random_state=self.seed % 2**31,  # LightGBM takes a C int
            verbose=-1,
            n_jobs=1,
            **hp,
        )
        fit_kw: dict[str, Any] = {}
        if len(val):
            fit_kw = {
                "eval_X": self._z(val.X),
                "eval_y": np.log(val.y),
                "callbacks": [lgb.early_stopping(100, verbose=False)],
            }
        model.fit(self._z(train.X), np.log(train.y), **fit_kw)
        self.booster = model.booster_
        self.info["training"] = {"best_iteration": int(model.best_iteration_ or hp["n_estimators"])}

    def _predict_np(self, X: np.ndarray) -> np.ndarray:
        return np.exp(self.booster.predict(self._z(X)))

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {"model_file": MODEL_FILE}

    def save_extra(self, folder: Path) -> None:
        self.booster.save_model(str(folder / MODEL_FILE))

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Path
    ) -> None:
        path = Path(folder) / MODEL_FILE  # never a path taken from the JSON
        if not path.is_file():
            raise InputError(f"{path} is missing")
        try:
            with _native_stderr_silenced():
                self.booster = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as e:
            raise InputError(f"{path} is malformed ({e})") from None


_STDERR_LOCK = threading.Lock()  # fd 2 is the process's: one swap at a time


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """LightGBM's C++ prints ``[LightGBM] [Fatal] ...`` to the process's stderr before it
    raises the same text: silenced at the descriptor, so a damaged file is one line (ours)."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to silence
            yield
            return
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
