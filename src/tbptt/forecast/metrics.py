"""Forecast errors overall and per lead: ``(M, H, O)`` forecasts against truths."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tbptt.errors import TBPTTError


def forecast_metrics(forecasts: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """MSE, MAE and RMSE over every origin, lead and target, and MSE and MAE per lead.

    ``forecasts, truth: (M, H, O)``. Returns ``mse``, ``mae``, ``rmse`` (floats) and
    ``mse_by_lead``, ``mae_by_lead`` (H floats each: lead 1 first), in the units of
    the arrays.
    """
    if forecasts.shape != truth.shape or forecasts.ndim != 3 or forecasts.size == 0:
        raise TBPTTError(
            f"forecasts {forecasts.shape} and truth {truth.shape} must be the same "
            "non-empty (origins, leads, targets) shape"
        )
    errors = forecasts.astype(np.float64) - truth.astype(np.float64)
    squared, absolute = np.square(errors), np.abs(errors)
    mse = float(squared.mean())
    return {
        "mse": mse,
        "mae": float(absolute.mean()),
        "rmse": math.sqrt(mse),
        "mse_by_lead": [float(v) for v in squared.mean(axis=(0, 2))],
        "mae_by_lead": [float(v) for v in absolute.mean(axis=(0, 2))],
    }


def skill(model_mse: float, persistence_mse: float) -> float:
    """``1 - model_mse / persistence_mse``: 0 as good as persistence, 1 perfect,
    below 0 worse (NaN when persistence is perfect)."""
    if persistence_mse == 0:
        return math.nan
    return 1.0 - model_mse / persistence_mse
