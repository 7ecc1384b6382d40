"""Accuracy figures of a latency predictor, all on milliseconds."""

from __future__ import annotations

import numpy as np
from scipy import stats


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE (ms), MAPE (%), share within ±5 % and ±10 %, R², Kendall τ."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) == 0:
        return {
            "n": 0,
            **{
                k: float("nan")
                for k in ("rmse_ms", "mape", "within_5", "within_10", "r2", "kendall_tau")
            },
        }
    rel = np.abs(y_pred - y_true) / y_true
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    tau = stats.kendalltau(y_true, y_pred).statistic if len(y_true) > 1 else float("nan")
    return {
        "n": len(y_true),
        "rmse_ms": float(np.sqrt(np.mean((y_pred - y_true) ** 2))),
        "mape": float(rel.mean() * 100),
        "within_5": float((rel <= 0.05).mean() * 100),
        "within_10": float((rel <= 0.10).mean() * 100),
        "r2": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "kendall_tau": float(tau),
    }
