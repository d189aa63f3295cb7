"""Forecasting: the naive baselines every forecast is shown beside, and its metrics.

- :mod:`tbptt.forecast.baselines`: persistence, seasonal naive and a least-squares
  linear autoregression, each forecasting the leads 1 .. H of every target from an
  origin t, on the same origins as the model;
- :mod:`tbptt.forecast.metrics`: MSE, MAE and RMSE overall and per lead, and the skill
  ``1 - MSE_model / MSE_persistence``;
- :mod:`tbptt.forecast.transforms`: :class:`Transforms`, from a series to a model's
  scaled inputs and targets and from its outputs back to forecasts.

Arrays are NumPy; forecasts and truths are ``(M, H, O)``: M origins, H leads, O
targets. Lead h of origin t is the value at step t + h, so the last value observed at
origin t is step t. Nothing here depends on the rest of tbptt beyond its error type
and :mod:`tbptt.data`.
"""

from tbptt.forecast.baselines import LinearAR, lead_truth, persistence, seasonal_naive
from tbptt.forecast.metrics import forecast_metrics, skill
from tbptt.forecast.transforms import Transforms

__all__ = [
    "LinearAR",
    "Transforms",
    "forecast_metrics",
    "lead_truth",
    "persistence",
    "seasonal_naive",
    "skill",
]
