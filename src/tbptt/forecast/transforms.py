"""What maps a CSV series to a forecasting model's inputs and targets, and its
outputs back to forecasts in the data's units.

The model reads the inputs (or their changes from the step before) scaled on the
training split, and at each origin t predicts, for each lead h = 1 .. H and target,
the scaled difference between y_{t+h} and a base forecast: the linear AR's
(``linear_ar``), the last value (``last``) or zero (``none``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tbptt.data import Normalizer, Series
from tbptt.forecast.baselines import LinearAR, lead_truth


@dataclass(frozen=True)
class Transforms:
    """What maps a CSV file to the model's inputs and targets, and forecasts back."""

    input_columns: tuple[str, ...]
    """The file's input columns (calendar features come after them)."""
    target_columns: tuple[str, ...]
    calendar: tuple[str, ...]
    inputs: Normalizer
    """Of the model's inputs, calendar features included, on the training split."""
    targets: Normalizer
    """Of the targets on the training split (the scaled units reports give)."""
    scale_targets: bool
    input_changes: bool
    """The model reads each input's change from the step before, not its level."""
    base: str
    """What the model's outputs are added to: none, last or linear_ar."""
    horizon: int
    season: int | None
    ar: LinearAR

    @property
    def history(self) -> int:
        """Steps before the first origin the baselines can forecast from."""
        return max(self.season or 1, self.ar.lags) - 1

    def model_inputs(self, series: Series) -> np.ndarray:
        """The model's inputs: ``(N, F)`` float32, scaled."""
        return self.inputs.transform(raw_inputs(series, self.input_changes)).astype(np.float32)

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """Target values ``(..., O)`` in the units the model trains on."""
        return self.targets.transform(values) if self.scale_targets else values

    @property
    def first_origin(self) -> int:
        """The first step with a base forecast (the linear AR needs its lags)."""
        return self.ar.lags - 1 if self.base == "linear_ar" else 0

    def base_forecast(self, series: Series, origins: np.ndarray) -> np.ndarray:
        """The base forecasts at ``origins`` (all >= first_origin) in the model's units:
        ``(M, H, O)``."""
        targets = series.targets.astype(np.float64)
        if self.base == "linear_ar":
            return self.scaled(self.ar.predict(targets, origins))
        shape = (len(origins), self.horizon, targets.shape[1])
        if self.base == "last":
            return np.broadcast_to(self.scaled(targets[origins])[:, None, :], shape)
        return np.zeros(shape)

    def model_targets(self, series: Series) -> np.ndarray:
        """The model's targets at origins ``0 .. N - H - 1``: ``(N - H, H * O)``, zeros
        before first_origin (no origin there is trained on or scored)."""
        origins = np.arange(self.first_origin, len(series) - self.horizon)
        goals = self.scaled(lead_truth(series.targets.astype(np.float64), origins, self.horizon))
        goals = (goals - self.base_forecast(series, origins)).reshape(len(origins), -1)
        padding = np.zeros((self.first_origin, goals.shape[1]))
        return np.concatenate([padding, goals]).astype(np.float32)

    def forecasts(self, series: Series, outputs: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """The model's ``outputs: (M, H * O)`` at ``origins`` (all >= first_origin) in
        the data's units: ``(M, H, O)``."""
        values = outputs.astype(np.float64).reshape(len(origins), self.horizon, -1)
        values = values + self.base_forecast(series, origins)
        return self.targets.inverse_transform(values) if self.scale_targets else values

    def state_dict(self) -> dict[str, Any]:
        """Plain data, for a checkpoint's extra."""
        return {
            "input_columns": list(self.input_columns),
            "target_columns": list(self.target_columns),
            "calendar": list(self.calendar),
            "inputs": self.inputs.state_dict(),
            "targets": self.targets.state_dict(),
            "scale_targets": self.scale_targets,
            "input_changes": self.input_changes,
            "base": self.base,
            "horizon": self.horizon,
            "season": self.season,
            "ar": self.ar.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Transforms:
        """The transforms saved by :meth:`state_dict`."""
        return cls(
            tuple(state["input_columns"]),
            tuple(state["target_columns"]),
            tuple(state["calendar"]),
            Normalizer.from_state_dict(state["inputs"]),
            Normalizer.from_state_dict(state["targets"]),
            bool(state["scale_targets"]),
            bool(state["input_changes"]),
            str(state["base"]),
            int(state["horizon"]),
            None if state["season"] is None else int(state["season"]),
            LinearAR.from_state_dict(state["ar"]),
        )


def raw_inputs(series: Series, changes: bool) -> np.ndarray:
    """The inputs ``(N, F)``, or their changes from the step before (0 at step 0)."""
    if not changes:
        return series.inputs
    return np.diff(series.inputs, axis=0, prepend=series.inputs[:1])
