"""Time series from CSV and arrays: exact values, every bad cell named, normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tbptt import TBPTTError
from tbptt.data.series import Normalizer, Series, read_csv


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_read_csv_takes_every_column_by_default(tmp_path):
    path = write(tmp_path, "a,b\n1,2.5\n-3, 4e1 \n")
    series = read_csv(path)
    assert series.input_names == series.target_names == ("a", "b")
    expected = np.array([[1, 2.5], [-3, 40]], dtype=np.float32)
    np.testing.assert_array_equal(series.inputs, expected)
    np.testing.assert_array_equal(series.targets, expected)
    assert series.inputs.dtype == np.float32 and len(series) == 2


def test_read_csv_chooses_columns_and_ignores_unused_text_columns(tmp_path):
    text = "\ufeffdate, temp ,wind,rain\n2024-01-01,1,2,3\n\n2024-01-02,4,5,6\n"
    series = read_csv(write(tmp_path, text), inputs=["wind", "temp"], targets=["rain"])
    assert series.input_names == ("wind", "temp") and series.target_names == ("rain",)
    np.testing.assert_array_equal(series.inputs, [[2, 1], [5, 4]])
    np.testing.assert_array_equal(series.targets, [[3], [6]])


def test_read_csv_reads_other_delimiters_and_quoted_cells(tmp_path):
    series = read_csv(write(tmp_path, 'x;y\n"1";2\n'), delimiter=";")
    np.testing.assert_array_equal(series.inputs, [[1, 2]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n3,abc\n", r"line 3, column 'b': 'abc' is not a number; write a number"),
        ("a,b\n1,2\n3,nan\n", r"line 3, column 'b': 'nan' is not finite; replace it"),
        ("a,b\n1,inf\n", r"line 2, column 'b': 'inf' is not finite"),
        ("a,b\n1,-Infinity\n", r"line 2, column 'b': '-Infinity' is not finite"),
        ("a,b\n1,2\n,4\n", r"line 3, column 'a': the cell is empty \(a missing value\); fill"),
        ("a,b\n1,1e39\n", r"line 2, column 'b': '1e39' is too large for float32"),
        ("a,b\n1,2\n3\n", r"line 3: 1 cells, but the header has 2 columns; give every row"),
        ("a,b\n1,2,3\n", r"line 2: 3 cells, but the header has 2 columns"),
        ("1,2\n3,4\n", r"line 1 \(the header\): the first line holds numbers, not column names"),
        ("a,a\n1,2\n", r"two columns are named 'a'; rename one"),
        ("a,\n1,2\n", r"column 2 has no name"),
        ("a,b\n", "has a header but no data rows"),
        ("\n\n", "holds only blank lines"),
        ('a,b\n1,"2"x\n', r"line 2: malformed CSV"),
    ],
)
def test_read_csv_names_the_line_and_column_of_bad_input(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(TBPTTError, match=message) as caught:
        read_csv(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_read_csv_lists_the_columns_and_the_nearest_one(tmp_path):
    path = write(tmp_path, "temperature,wind\n1,2\n")
    message = r"no column 'temprature' \(in inputs\); did you mean 'temperature'\? the columns"
    with pytest.raises(TBPTTError, match=message):
        read_csv(path, inputs=["temprature"])
    with pytest.raises(TBPTTError, match=r"no column 'x' \(in targets\); the columns are "):
        read_csv(path, targets=["x"])
    with pytest.raises(TBPTTError, match=r"inputs=\[\] chooses no column"):
        read_csv(path, inputs=[])


def test_read_csv_refuses_missing_empty_folder_and_binary_files(tmp_path):
    with pytest.raises(TBPTTError, match="no such CSV file"):
        read_csv(tmp_path / "missing.csv")
    with pytest.raises(TBPTTError, match="is a folder"):
        read_csv(tmp_path)
    with pytest.raises(TBPTTError, match="the CSV file is empty"):
        read_csv(write(tmp_path, ""))
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,b\n1,2\n\xff\xfe\x00\x01")
    with pytest.raises(TBPTTError, match=r"line 3, byte 1 \(offset 8\): the file is not valid"):
        read_csv(path)


def test_from_arrays_makes_columns_and_defaults_targets_to_inputs():
    series = Series.from_arrays(np.arange(4))
    assert series.inputs.shape == series.targets.shape == (4, 1)
    assert series.input_names == ("input_0",) and series.inputs.dtype == np.float32
    named = Series.from_arrays(np.ones((3, 2)), np.zeros(3), input_names=["p", "q"])
    assert named.target_names == ("target_0",) and named.targets.shape == (3, 1)


@pytest.mark.parametrize(
    ("inputs", "targets", "message"),
    [
        (np.array([[1.0, 2.0], [3.0, np.nan]]), None, r"inputs\[1, 1\] is .*nan"),
        (np.ones(3), np.array([1.0, np.inf, 2.0]), r"targets\[1, 0\] is .*inf"),
        (np.array([1.0, 1e39]), None, r"inputs\[1, 0\] is .*1e\+39, not a finite float32"),
        (np.array(["a", "b"]), None, "give a numeric array"),
        (np.ones((2, 2, 2)), None, r"shape \(2, 2, 2\)"),
        (np.ones(3), np.ones(4), "inputs have 3 rows and targets 4"),
    ],
)
def test_from_arrays_names_the_index_of_the_first_bad_value(inputs, targets, message):
    with pytest.raises(TBPTTError, match=message):
        Series.from_arrays(inputs, targets)


def test_pairs_with_an_offset_put_the_target_offset_steps_after_the_input():
    series = Series.from_arrays(np.arange(6), np.arange(6) * 10)
    inputs, targets = series.pairs(offset=2)
    assert inputs[:, 0].tolist() == [0, 1, 2, 3] and targets[:, 0].tolist() == [20, 30, 40, 50]
    same_step_inputs, same_step_targets = series.pairs(offset=0)
    assert len(same_step_inputs) == len(same_step_targets) == 6
    with pytest.raises(TBPTTError, match="horizon=1 with offset=6 needs more than 6 steps"):
        series.pairs(offset=6)


def test_split_is_by_time_and_contiguous():
    train, validation = Series.from_arrays(np.arange(10)).split(0.3)
    assert train.inputs[:, 0].tolist() == list(range(7))
    assert validation.inputs[:, 0].tolist() == [7, 8, 9]
    with pytest.raises(TBPTTError, match="2 time steps .* leaves the validation part empty"):
        Series.from_arrays(np.arange(2)).split(0.1)


def test_normalizer_fitted_on_train_gives_zero_mean_unit_std_there():
    rng = np.random.default_rng(0)
    data = rng.normal([5.0, -2.0], [3.0, 0.5], size=(200, 2)).astype(np.float32)
    train, validation = data[:150], data[150:]
    scale = Normalizer.fit(train)
    scaled = scale.transform(train)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=0), 1, atol=1e-5)
    assert scale.mean == tuple(float(m) for m in train.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(
        scale.inverse_transform(scale.transform(validation)), validation, rtol=1e-5
    )


def test_normalizer_maps_a_constant_column_to_zeros():
    scale = Normalizer.fit(np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 3.0]]))
    assert scale.std[0] == 1.0
    np.testing.assert_allclose(scale.transform(np.array([[0.1, 2.0]])), [[0, 0]], atol=1e-7)


def test_normalizer_works_on_tensors_of_any_leading_shape():
    scale = Normalizer.fit(np.array([[1.0, 10.0], [3.0, 30.0]]))
    values = torch.tensor([[[1.0, 10.0]], [[3.0, 30.0]]])  # (T, B, F)
    scaled = scale.transform(values)
    assert torch.allclose(scaled, torch.tensor([[[-1.0, -1.0]], [[1.0, 1.0]]]))
    assert torch.allclose(scale.inverse_transform(scaled), values)


def test_normalizer_state_dict_round_trips_through_json():
    scale = Normalizer.fit(np.array([[1.0, 5.0], [2.0, 5.0]]))
    state = json.loads(json.dumps(scale.state_dict()))
    assert Normalizer.from_state_dict(state) == scale


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"mean": [0.0]}, "exactly 'mean' and 'std'"),
        ({"mean": 0.0, "std": 1.0}, "must be lists"),
        ({"mean": ["0"], "std": [1.0]}, "only numbers"),
        ({"mean": [0.0], "std": [0.0]}, "std must be positive"),
        ({"mean": [0.0, 1.0], "std": [1.0]}, "equal length"),
    ],
)
def test_normalizer_refuses_a_bad_state(state, message):
    with pytest.raises(TBPTTError, match=message):
        Normalizer.from_state_dict(state)


def test_normalizer_refuses_bad_values():
    with pytest.raises(TBPTTError, match=r"values\[:, None\]"):
        Normalizer.fit(np.ones(5))
    with pytest.raises(TBPTTError, match="not finite"):
        Normalizer.fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(TBPTTError, match="do not end in the 2 columns"):
        Normalizer.fit(np.ones((3, 2))).transform(np.ones((3, 3)))
