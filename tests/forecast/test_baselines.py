"""Each baseline against a computation by hand on a tiny series."""

import numpy as np
import pytest

from tbptt.errors import TBPTTError
from tbptt.forecast import LinearAR, lead_truth, persistence, seasonal_naive

SERIES = np.array([[1.0], [4.0], [2.0], [8.0], [5.0], [7.0]])


def test_lead_truth_holds_the_next_horizon_values():
    assert lead_truth(SERIES, np.array([1, 2]), 3)[:, :, 0].tolist() == [[2, 8, 5], [8, 5, 7]]


def test_persistence_repeats_the_last_value():
    assert persistence(SERIES, np.array([1, 3]), 2)[:, :, 0].tolist() == [[4, 4], [8, 8]]


def test_seasonal_naive_takes_the_last_value_at_the_same_phase():
    # season 2, origin t = 2 (steps 0..2 observed): leads 1, 2, 3 are steps 3, 4, 5, whose
    # latest observed steps of the same phase are 1, 2 and 1 (step 3 is not yet observed)
    forecasts = seasonal_naive(SERIES, np.array([2]), 3, season=2)
    assert forecasts[0, :, 0].tolist() == [4, 2, 4]


def test_seasonal_naive_with_season_one_is_persistence():
    origins = np.array([0, 2, 4])
    np.testing.assert_array_equal(
        seasonal_naive(SERIES, origins, 1, season=1), persistence(SERIES, origins, 1)
    )


def test_seasonal_naive_refuses_origins_without_a_season_behind_them():
    with pytest.raises(TBPTTError, match="needs origins t >= 2"):
        seasonal_naive(SERIES, np.array([1]), 1, season=3)


def test_linear_ar_is_the_least_squares_fit_by_hand():
    # one lag, one lead: y_{t+1} = c + a y_t over the pairs (1,4) (4,2) (2,8) (8,5) (5,7)
    x, y = SERIES[:-1, 0], SERIES[1:, 0]
    a = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    c = y.mean() - a * x.mean()
    model = LinearAR.fit(SERIES, lags=1, horizon=1)
    np.testing.assert_allclose(model.coefficients[:, 0], [c, a])
    np.testing.assert_allclose(model.predict(SERIES, np.array([5]))[0, 0, 0], c + a * 7)


def test_linear_ar_recovers_an_exact_autoregression_at_every_lead():
    values = [1.0, 0.5]
    for _ in range(30):
        values.append(0.9 * values[-1] - 0.2 * values[-2] + 0.1)
    series = np.array(values)[:, None]
    model = LinearAR.fit(series, lags=2, horizon=3)
    origins = np.arange(1, len(series) - 3)
    np.testing.assert_allclose(
        model.predict(series, origins), lead_truth(series, origins, 3), atol=1e-8
    )


def test_linear_ar_saves_and_loads():
    model = LinearAR.fit(SERIES, lags=2, horizon=2)
    again = LinearAR.from_state_dict(model.state_dict())
    np.testing.assert_array_equal(
        again.predict(SERIES, np.array([3])), model.predict(SERIES, np.array([3]))
    )


def test_linear_ar_needs_enough_training_steps():
    with pytest.raises(TBPTTError, match="lower --ar-lags"):
        LinearAR.fit(SERIES, lags=5, horizon=2)
