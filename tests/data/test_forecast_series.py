"""Multi-step pairs, time columns, exclusions and calendar features of CSV series."""

import math

import numpy as np
import pytest

from tbptt.data import Series, read_csv
from tbptt.data.calendar import calendar_features, season_of
from tbptt.errors import TBPTTError


def test_pairs_hold_the_next_horizon_steps_of_every_target_lead_after_lead():
    values = np.arange(8, dtype=np.float32)
    series = Series.from_arrays(values, np.stack([values * 10, values * 100], axis=1))
    inputs, targets = series.pairs(horizon=3)
    assert inputs[:, 0].tolist() == [0, 1, 2, 3, 4]
    expected = [[10 * (t + h), 100 * (t + h)] for t in range(5) for h in (1, 2, 3)]
    assert targets.reshape(-1, 2).tolist() == expected


def test_horizon_one_is_the_one_step_forecast():
    series = Series.from_arrays(np.arange(5))
    inputs, targets = series.pairs(horizon=1)
    assert targets[:, 0].tolist() == [1, 2, 3, 4] and len(inputs) == 4


def test_no_pair_of_a_split_reaches_past_its_end():
    series = Series.from_arrays(np.arange(20))
    train, validation = series.split(0.25)
    for part in (train, validation):
        _, targets = part.pairs(horizon=4)
        assert targets.max() <= part.inputs[-1, 0]
        assert targets.min() > part.inputs[0, 0]


def test_a_horizon_longer_than_the_series_is_refused():
    with pytest.raises(TBPTTError, match="horizon=5 with offset=1 needs more than 5 steps"):
        Series.from_arrays(np.arange(5)).pairs(horizon=5)


def write(tmp_path, text):
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


def test_a_first_column_of_dates_is_the_time_index_and_never_an_input(tmp_path):
    path = write(tmp_path, "date,a,b\n2020-01-01,1,2\n2020-01-02,3,4\n2020-01-03,5,6\n")
    series = read_csv(path)
    assert series.input_names == ("a", "b") and series.inputs.shape == (3, 2)
    assert series.times == ("2020-01-01", "2020-01-02", "2020-01-03")


def test_a_named_time_column_may_hold_numbers(tmp_path):
    path = write(tmp_path, "a,year\n1,1700\n2,1701\n")
    series = read_csv(path, time_column="year")
    assert series.input_names == ("a",) and series.times == ("1700", "1701")


def test_a_time_column_that_does_not_parse_is_an_error(tmp_path):
    path = write(tmp_path, "when,a\n2020-01-01,1\nyesterday,2\n")
    with pytest.raises(TBPTTError, match="line 3.*'yesterday' is not a date, time or number"):
        read_csv(path, time_column="when")


def test_the_time_column_cannot_be_an_input(tmp_path):
    path = write(tmp_path, "date,a\n2020-01-01,1\n2020-01-02,2\n")
    with pytest.raises(TBPTTError, match="'date' is the time column"):
        read_csv(path, time_column="date", inputs=["date", "a"])


def test_exclude_drops_columns_from_the_default_inputs(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,x\n3,4,y\n")
    assert read_csv(path, exclude=["c"]).input_names == ("a", "b")
    with pytest.raises(TBPTTError, match="no column 'd' \\(in exclude\\)"):
        read_csv(path, exclude=["d"])


@pytest.mark.parametrize(
    ("times", "season"),
    [
        (["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 02:00"], 24),
        (["2020-01-01", "2020-01-02", "2020-01-03"], 7),
        (["2020-01-01", "2020-02-01", "2020-03-01"], 12),
        (["1700", "1701", "1702"], None),
    ],
)
def test_the_default_season_follows_the_spacing(times, season):
    assert season_of(times) == season


def test_calendar_features_are_the_sine_and_cosine_of_each_field():
    features, names = calendar_features(["2020-01-01 06:00", "2020-01-01 18:00"], ["hour"])
    assert names == ("hour_sin", "hour_cos")
    np.testing.assert_allclose(features, [[1, math.cos(math.pi / 2)], [-1, 0]], atol=1e-6)
