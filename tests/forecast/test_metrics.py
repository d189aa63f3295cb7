"""Forecast metrics against a NumPy computation, and the skill score."""

import math

import numpy as np
import pytest

from tbptt.errors import TBPTTError
from tbptt.forecast import forecast_metrics, skill


def test_per_lead_and_overall_metrics_equal_numpy():
    generator = np.random.default_rng(0)
    forecasts, truth = generator.normal(size=(2, 7, 3, 2))
    metrics = forecast_metrics(forecasts, truth)
    errors = forecasts - truth
    for lead in range(3):
        assert metrics["mse_by_lead"][lead] == pytest.approx(np.mean(errors[:, lead] ** 2))
        assert metrics["mae_by_lead"][lead] == pytest.approx(np.mean(np.abs(errors[:, lead])))
    assert metrics["mse"] == pytest.approx(np.mean(errors**2))
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert metrics["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))


def test_shapes_must_agree():
    with pytest.raises(TBPTTError, match="must be the same"):
        forecast_metrics(np.zeros((2, 3, 1)), np.zeros((2, 2, 1)))


def test_skill_is_one_minus_the_mse_ratio():
    assert skill(0.25, 1.0) == 0.75 and skill(2.0, 1.0) == -1.0
    assert math.isnan(skill(1.0, 0.0))
