"""Latency predictors: additive op table, ElasticNet, MLP, LightGBM, LUT + MLP correction, and
an additive model with learned op costs."""

from lenna.predict import additive, gbdt, linear, lut, mlp, residual  # noqa: F401  (register)
from lenna.predict.base import OutOfRange, Predictor, list_kinds
from lenna.predict.data import LatencyData, load_data
from lenna.predict.io import load_predictor, save_predictor
from lenna.predict.train import evaluate_model, train_predictor

__all__ = [
    "LatencyData",
    "OutOfRange",
    "Predictor",
    "evaluate_model",
    "list_kinds",
    "load_data",
    "load_predictor",
    "save_predictor",
    "train_predictor",
]
