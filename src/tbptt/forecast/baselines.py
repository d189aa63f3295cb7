"""The simplest forecasts a model must beat, on the model's own origins and leads.

Every function takes the target values of the whole series ``targets: (N, O)`` and
the forecast origins ``origins: (M,)`` (step indices t; only steps up to t are
read) and returns ``(M, H, O)``: lead h (1 .. H) of origin t forecasts step t + h.

- persistence: ``y_t`` at every lead, the last value;
- seasonal naive with season P: ``y_{t + h - P * ceil(h / P)}``, the last value one
  season back at the same phase (needs t >= P - 1);
- :class:`LinearAR`: ``y_{t+h} ~ c_h + sum_{j<L} A_{h,j} y_{t-j}``, one least-squares
  fit per lead on the training split (needs t >= L - 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tbptt.errors import TBPTTError


def lead_truth(targets: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The true values ``y_{t+1} .. y_{t+H}`` of each origin: ``(M, H, O)``."""
    if len(origins) and origins.max() + horizon >= len(targets):
        raise TBPTTError(f"an origin's lead {horizon} lies past the end of {len(targets)} steps")
    return targets[origins[:, None] + np.arange(1, horizon + 1)]


def persistence(targets: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last value ``y_t`` at every lead: ``(M, H, O)``."""
    return np.repeat(targets[origins][:, None, :], horizon, axis=1)


def seasonal_naive(
    targets: np.ndarray, origins: np.ndarray, horizon: int, season: int
) -> np.ndarray:
    """The value one season back at the same phase, ``y_{t+h-P*ceil(h/P)}``: ``(M, H, O)``."""
    if season < 1:
        raise TBPTTError(f"season must be >= 1, got {season}")
    leads = np.arange(1, horizon + 1)
    back = leads - season * -(-leads // season)  # in [1 - P, 0]
    steps = origins[:, None] + back
    if len(origins) and steps.min() < 0:
        raise TBPTTError(f"seasonal naive with season {season} needs origins t >= {season - 1}")
    return targets[steps]


def lag_features(targets: np.ndarray, origins: np.ndarray, lags: int) -> np.ndarray:
    """``[1, y_t, y_{t-1}, ..., y_{t-L+1}]`` per origin: ``(M, 1 + L * O)``."""
    if len(origins) and origins.min() < lags - 1:
        raise TBPTTError(f"a linear AR on {lags} lags needs origins t >= {lags - 1}")
    window = targets[origins[:, None] - np.arange(lags)]  # (M, L, O)
    return np.concatenate([np.ones((len(origins), 1)), window.reshape(len(origins), -1)], axis=1)


@dataclass(frozen=True)
class LinearAR:
    """A direct linear autoregression: each lead of each target a least-squares linear
    function of the last ``lags`` values of every target (and a constant)."""

    lags: int
    horizon: int
    coefficients: np.ndarray
    """``(1 + lags * O, horizon * O)`` float64: the constant's row first."""

    @classmethod
    def fit(cls, targets: np.ndarray, lags: int, horizon: int) -> LinearAR:
        """Fit on every origin of ``targets: (N, O)`` (the training split) that has
        ``lags`` values behind it and ``horizon`` ahead."""
        origins = np.arange(lags - 1, len(targets) - horizon)
        if lags < 1 or len(origins) < 1:
            raise TBPTTError(
                f"a linear AR on {lags} lags with horizon {horizon} needs more than "
                f"{lags + horizon - 1} training steps, got {len(targets)}; lower --ar-lags"
            )
        values = targets.astype(np.float64)
        features = lag_features(values, origins, lags)
        goals = lead_truth(values, origins, horizon).reshape(len(origins), -1)
        coefficients = np.linalg.lstsq(features, goals, rcond=None)[0]
        return cls(lags, horizon, coefficients)

    def predict(self, targets: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Forecasts of leads 1 .. horizon from each origin: ``(M, horizon, O)``."""
        features = lag_features(targets.astype(np.float64), origins, self.lags)
        return (features @ self.coefficients).reshape(len(origins), self.horizon, -1)

    def state_dict(self) -> dict[str, Any]:
        """Plain data, for a checkpoint."""
        return {
            "lags": self.lags,
            "horizon": self.horizon,
            "coefficients": self.coefficients.tolist(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LinearAR:
        """The model saved by :meth:`state_dict`."""
        return cls(int(state["lags"]), int(state["horizon"]), np.asarray(state["coefficients"]))
