"""CSV forecasting runs end to end: splits, warm-state scoring, scaling, baselines,
predictions and bad input."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import tbptt
from tbptt.cli import forecasting
from tbptt.cli.main import main
from tbptt.cli.runconfig import DataConfig, RunConfig, TrainConfig
from tbptt.data import read_csv
from tbptt.errors import TBPTTError
from tbptt.forecast import forecast_metrics, lead_truth
from tests.refusals import assert_refused

SMALL = ["--hidden-size", "8", "--num-layers", "1", "--k1", "8", "--batch-size", "2", "--quiet"]
STEPS = 240


def hourly_rows(steps: int, year: int = 2021) -> list[str]:
    rows = []
    for t in range(steps):
        day, hour = divmod(t, 24)
        temperature = 10 + 3 * math.sin(2 * math.pi * t / 24) + 0.3 * math.sin(t / 7)
        rows.append(
            f"{year}-01-{day + 1:02d} {hour:02d}:00,{temperature:.4f},{math.cos(t / 5):.4f}"
        )
    return rows


def write_series(path, rows) -> None:
    path.write_text("date,temp,wind\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with an hourly series, a short one, and a trained run on the first."""
    root = tmp_path_factory.mktemp("forecast")
    write_series(root / "hourly.csv", hourly_rows(STEPS))
    write_series(root / "short.csv", hourly_rows(6))
    (root / "other.csv").write_text("date,x,y\n2021-01-01 00:00,1,2\n")
    (root / "bad_dates.csv").write_text("when,temp\nsoon,1\nlater,2\n")
    argv = ["train", "--csv", str(root / "hourly.csv"), "--targets", "temp", "--horizon", "4"]
    argv += ["--test-fraction", "0.25", "--ar-lags", "3", "--max-windows", "12", *SMALL]
    assert main([*argv, "--run-dir", str(root / "run")]) == 0
    return root


def config_for(world, **data) -> RunConfig:
    return RunConfig(
        DataConfig(csv=str(world / "hourly.csv"), targets=["temp"], batch_size=2, **data),
        train=TrainConfig(k1=8),
    )


def test_no_training_or_validation_pair_crosses_a_split_boundary(world):
    config = config_for(world, horizon=5, test_fraction=0.25, scale_targets=False)
    config = replace(config, data=replace(config.data, base="none"))
    series, splits = forecasting.load_series(config.data)
    train, validation, _, _ = forecasting.run_data(config, None)
    # the targets are temperatures: find the step each came from
    steps = {float(v): t for t, v in enumerate(series.targets[:, 0])}
    targets = torch.cat([batch.targets.flatten(0, 1) for batch in train.batches(0)])
    assert max(steps[float(v)] for v in targets.flatten()) < splits.train
    batch = next(iter(validation.batches(0)))
    scored = batch.targets[batch.mask].flatten()
    assert min(steps[float(v)] for v in scored) > splits.train
    assert max(steps[float(v)] for v in scored) < splits.validation


def test_the_splits_are_recorded_in_config_json(world):
    splits = json.loads((world / "run" / "config.json").read_text())["splits"]
    # 240 steps: the last 60 (25%) test, the 24 (10%) before them validation
    assert splits["train"]["rows"] == [0, 156] and splits["test"]["rows"] == [180, 240]
    assert splits["test"]["first"] == "2021-01-08 12:00"


def test_the_time_column_never_reaches_the_model(world, tmp_path):
    run = tbptt.load_run(str(world / "run"))
    assert run.model.rnn.input_size == 2  # temp and wind, not the date
    assert run.transforms.input_columns == ("temp", "wind")
    shifted = tmp_path / "shifted.csv"
    write_series(shifted, hourly_rows(STEPS, year=1999))  # the same values, other dates
    np.testing.assert_array_equal(run.predict(str(world / "hourly.csv")), run.predict(str(shifted)))


def test_forecasts_round_trip_to_the_original_units(world):
    config = config_for(world, horizon=3, test_fraction=0.25)
    series, splits = forecasting.load_series(config.data)
    transforms = forecasting.fit_transforms(config.data, series, splits)
    assert transforms.scale_targets and transforms.base == "linear_ar"
    origins = np.arange(transforms.first_origin, len(series) - 3)
    back = transforms.forecasts(series, transforms.model_targets(series)[origins], origins)
    np.testing.assert_allclose(back, lead_truth(series.targets, origins, 3), rtol=1e-5)


def test_the_targets_are_scaled_on_the_training_split(world):
    config = config_for(world, horizon=1, test_fraction=0.25)
    series, splits = forecasting.load_series(config.data)
    transforms = forecasting.fit_transforms(config.data, series, splits)
    train = series.targets[: splits.train, 0].astype(np.float64)
    assert transforms.targets.mean[0] == pytest.approx(train.mean())
    assert transforms.targets.std[0] == pytest.approx(train.std())


def test_the_test_split_scored_warm_equals_the_whole_series_scored_on_its_test_part(world):
    run = tbptt.load_run(str(world / "run"))
    series = read_csv(world / "hourly.csv", targets=["temp"])
    with torch.no_grad():  # one pass over the whole series from a zero state
        outputs, _ = run.model(torch.as_tensor(run.transforms.model_inputs(series))[:, None])
    origins = np.arange(180, 240 - 4)
    forecasts = run.transforms.forecasts(series, outputs[:, 0].numpy()[origins], origins)
    expected = forecast_metrics(forecasts, lead_truth(series.targets, origins, 4))
    report = forecasting.evaluate_run(run.model, run.config, saved(world), None, "test", 0, "cpu")
    assert report["origins"] == len(origins)
    assert report["methods"]["model"]["mse"] == pytest.approx(expected["mse"], rel=1e-5)
    np.testing.assert_allclose(
        report["methods"]["model"]["mse_by_lead"], expected["mse_by_lead"], rtol=1e-5
    )


def saved(world):
    return torch.load(world / "run" / "checkpoints" / "best.pt", weights_only=True)["extra"]


def test_eval_reports_the_model_beside_every_baseline(world, capsys):
    capsys.readouterr()
    assert main(["eval", str(world / "run"), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["methods"]) == {"model", "persistence", "seasonal_naive_24", "linear_ar_3"}
    for metrics in report["methods"].values():
        assert len(metrics["mse_by_lead"]) == 4
        assert metrics["rmse"] == pytest.approx(math.sqrt(metrics["mse"]))
    assert report["methods"]["persistence"]["skill"] == 0.0
    assert "persistence" in report["verdict"]


def test_a_model_that_loses_to_persistence_says_so():
    methods = {"model": {"mse": 2.0, "skill": -1.0}, "persistence": {"mse": 1.0, "skill": 0.0}}
    assert "LOSES to persistence" in forecasting.verdict(methods)


def test_eval_of_a_new_file_starts_after_the_warmup(world, capsys):
    capsys.readouterr()
    arguments = ["eval", str(world / "run"), str(world / "hourly.csv"), "--warmup", "100"]
    assert main([*arguments, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["origins"] == STEPS - 4 - 100


def test_predict_writes_one_row_per_origin_in_original_units(world, tmp_path, capsys):
    out, plot = tmp_path / "predictions.csv", tmp_path / "forecast.png"
    code = main(["predict", str(world / "run"), "--out", str(out), "--plot", str(plot)])
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "time,temp+1,temp+2,temp+3,temp+4"
    assert len(lines) - 1 == 240 - 180 - 4 and lines[1].startswith("2021-01-08 12:00,")
    assert plot.read_bytes()[:4] == b"\x89PNG"
    run = tbptt.load_run(str(world / "run"))
    first = [float(v) for v in lines[1].split(",")[1:]]
    np.testing.assert_allclose(first, run.predict(str(world / "hourly.csv"))[180, :, 0], rtol=1e-6)


def test_predict_of_a_file_forecasts_beyond_its_end(world, tmp_path):
    out = tmp_path / "future.npy"
    arguments = ["predict", str(world / "run"), str(world / "hourly.csv"), "--out", str(out)]
    assert main([*arguments, "--warmup", "10"]) == 0
    assert np.load(out).shape == (STEPS - 10, 4, 1)


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--csv", "bad_dates.csv", "--time-column", "when"], ("'soon' is not a date",)),
        (["--csv", "hourly.csv", "--time-column", "day"], ("no column 'day'",)),
        (["--csv", "hourly.csv", "--exclude", "rain"], ("no column 'rain' (in exclude)",)),
        (["--csv", "hourly.csv", "--horizon", "30"], ("no more than horizon 30",)),
        (["--csv", "hourly.csv", "--test-fraction", "0.9"], ("leave no training data",)),
        (["--csv", "hourly.csv", "--season", "500"], ("season 500 is not shorter",)),
        (["--csv", "hourly.csv", "--calendar", "minute"], ("calendar field 'minute'",)),
        (["--csv", "short.csv", "--horizon", "2"], ("holds no forecast",)),
    ],
)
def test_bad_forecasting_input_is_refused_in_one_line(world, monkeypatch, capsys, argv, fragments):
    monkeypatch.chdir(world)
    assert_refused(["train", *argv, *SMALL, "--run-dir", "new"], fragments, world, capsys)


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["eval", "run", "other.csv"], ("no column 'temp'",)),
        (["eval", "run", "short.csv", "--warmup", "3"], ("no forecast is left",)),
        (["predict", "run", "--out", "p.txt"], ("ending in .csv or .npy",)),
        (["predict", "run", "--out", "p.csv", "--leads", "9"], ("--leads 9 is not in [1, 4]",)),
    ],
)
def test_bad_eval_and_predict_input_is_refused(world, monkeypatch, capsys, argv, fragments):
    monkeypatch.chdir(world)
    assert_refused(argv, fragments, world, capsys)


def test_the_model_reads_the_inputs_changes_scaled_on_the_training_split(world):
    config = config_for(world, horizon=2, test_fraction=0.25)
    series, splits = forecasting.load_series(config.data)
    transforms = forecasting.fit_transforms(config.data, series, splits)
    changes = np.diff(series.inputs.astype(np.float64), axis=0, prepend=series.inputs[:1])
    train = changes[: splits.train]
    expected = (changes - train.mean(axis=0)) / train.std(axis=0)
    np.testing.assert_allclose(transforms.model_inputs(series), expected, rtol=1e-4, atol=1e-5)


def test_calendar_features_are_inputs_after_the_file_columns(world):
    data = DataConfig(csv=str(world / "hourly.csv"), calendar=["hour", "weekday"])
    series = forecasting.read_series(data, data.csv)
    assert series.input_names == (
        "temp",
        "wind",
        "hour_sin",
        "hour_cos",
        "weekday_sin",
        "weekday_cos",
    )
    assert series.inputs[6, 2] == pytest.approx(1.0)  # 06:00: a quarter of the day


def test_validation_and_test_files_follow_the_training_file(world, tmp_path):
    rows = hourly_rows(STEPS)
    for name, part in (("train", rows[:150]), ("validation", rows[150:190]), ("test", rows[190:])):
        write_series(tmp_path / f"{name}.csv", part)
    data = DataConfig(
        csv=str(tmp_path / "train.csv"),
        validation_file=str(tmp_path / "validation.csv"),
        test_file=str(tmp_path / "test.csv"),
    )
    series, splits = forecasting.load_series(data)
    assert (splits.train, splits.validation, splits.end) == (150, 190, STEPS)
    whole = read_csv(world / "hourly.csv")
    np.testing.assert_array_equal(series.inputs, whole.inputs)
    assert series.times == whole.times


def test_a_test_fraction_cannot_come_after_a_validation_file(world):
    data = DataConfig(
        csv=str(world / "hourly.csv"), validation_file=str(world / "hourly.csv"), test_fraction=0.2
    )
    with pytest.raises(TBPTTError, match="give --test-file instead"):
        forecasting.load_series(data)
