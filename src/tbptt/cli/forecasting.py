"""CSV forecasting runs: chronological splits, the transforms between a file and the
model, warm-state scoring beside the baselines, and predictions out.

A run's series is cut in time, train | validation | test (fractions of ``--csv``,
or ``--validation-file`` and ``--test-file`` that follow it in time). At every step
t the model reads the inputs x_t and forecasts the targets of steps t+1 .. t+H; an
origin t belongs to a split when t and its H leads all lie inside it, so no pair
crosses a boundary. Training pairs come from the training split only, laid out as
batch_size streams.

**Warm state.** Validation and test are scored as a deployed stateful forecaster
runs: one stream reads the series from its first step, so the state at the first
validation origin has read all of the training data, and at the first test origin
all of training and validation. Only the split's origins are scored. ``tbptt eval
RUN FILE --warmup N`` reads a new file from its first step and scores the origins
from step N on.

**Scaling.** Inputs (calendar features included; by default their changes from the
step before) and targets are scaled to zero mean and unit variance on the training
split, and the model corrects a base forecast (``--base``);
:class:`tbptt.forecast.Transforms` maps files to model inputs and targets and
forecasts back to the data's units, and is saved in every checkpoint.

**Baselines** (:mod:`tbptt.forecast`) are scored on the same origins and leads: the
first scored origin of a new file leaves ``season`` and ``ar_lags`` steps of history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tbptt.cli.runconfig import DataConfig, RunConfig
from tbptt.data import Normalizer, Series, Streams, read_csv
from tbptt.data.calendar import calendar_features, season_of
from tbptt.errors import TBPTTError
from tbptt.files import file_error
from tbptt.forecast import (
    LinearAR,
    Transforms,
    forecast_metrics,
    lead_truth,
    persistence,
    seasonal_naive,
    skill,
)
from tbptt.forecast.transforms import raw_inputs

logger = logging.getLogger(__name__)

CHUNK = 256
"""Steps per forward call when scoring (the state is carried, so only memory depends on it)."""

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """Where the splits of a run's series start and end: train ``[0, train)``,
    validation ``[train, validation)``, test ``[validation, end)`` (maybe empty)."""

    train: int
    validation: int
    end: int

    def span(self, name: str) -> tuple[int, int]:
        """``(start, stop)`` of split ``name``."""
        return {
            "train": (0, self.train),
            "validation": (self.train, self.validation),
            "test": (self.validation, self.end),
        }[name]

    def record(self, times: tuple[str, ...] | None) -> dict[str, Any]:
        """The boundaries as config.json records them: rows, and times if known."""
        document: dict[str, Any] = {}
        for name in SPLITS:
            start, stop = self.span(name)
            if stop > start:
                document[name] = {"rows": [start, stop]}
                if times is not None:
                    document[name].update(first=times[start], last=times[stop - 1])
        return document


def read_series(
    data: DataConfig,
    path: str,
    inputs: list[str] | None = None,
    targets: list[str] | None = None,
) -> Series:
    """A CSV file read as the run reads it, its calendar features added as inputs;
    ``inputs`` and ``targets`` (a run's columns) override the config's."""
    series = read_csv(
        path,
        inputs=inputs if inputs is not None else data.inputs,
        targets=targets if targets is not None else data.targets,
        time_column=data.time_column,
        exclude=() if inputs is not None else (data.exclude or ()),
    )
    if not data.calendar:
        return series
    if series.times is None:
        raise file_error(path, "has no time column for --calendar", "name --time-column")
    try:
        features, names = calendar_features(series.times, data.calendar)
    except TBPTTError as error:
        raise file_error(path, str(error).split(";")[0], "see --calendar in --help") from None
    return Series(
        np.concatenate([series.inputs, features], axis=1),
        series.targets,
        (*series.input_names, *names),
        series.target_names,
        series.times,
    )


def concatenate(parts: list[Series]) -> Series:
    """Series that follow each other in time, as one."""
    labels = [p.times for p in parts]
    times = None if any(t is None for t in labels) else tuple(c for t in labels for c in t or ())
    return Series(
        np.concatenate([p.inputs for p in parts]),
        np.concatenate([p.targets for p in parts]),
        parts[0].input_names,
        parts[0].target_names,
        times,
    )


def file_inputs(series: Series, data: DataConfig) -> list[str]:
    """The input columns a file gives (the series' inputs less calendar features)."""
    count = len(series.input_names) - 2 * len(data.calendar or [])
    return list(series.input_names[:count])


def load_series(data: DataConfig) -> tuple[Series, Splits]:
    """The run's whole series (its files end to end) and its split boundaries."""
    if data.csv is None:
        raise TBPTTError("a forecasting run needs --csv")
    main = read_series(data, data.csv)
    columns = {"inputs": file_inputs(main, data), "targets": list(main.target_names)}
    parts, count = [main], len(main)
    if data.validation_file is not None and data.test_fraction > 0:
        raise TBPTTError(
            "test_fraction cuts the test part from --csv, which must come after "
            "--validation-file in time: give --test-file instead"
        )
    test = round(count * data.test_fraction) if data.test_file is None else 0
    if data.validation_file is not None:
        parts.append(read_series(data, data.validation_file, **columns))
        train, validation = count, count + len(parts[-1])
    else:
        validation = count - test
        train = validation - round(count * data.validation_fraction)
    if data.test_file is not None:
        parts.append(read_series(data, data.test_file, **columns))
    series = concatenate(parts)
    splits = Splits(train, validation, len(series))
    check_splits(splits, data)
    return series, splits


def check_splits(splits: Splits, data: DataConfig) -> None:
    """Refuse splits that leave no training data or no origin in a split."""
    if splits.train < 1 or splits.validation <= splits.train:
        raise TBPTTError(
            f"the splits train {splits.span('train')}, validation {splits.span('validation')} "
            "leave a part empty; use more data or change validation_fraction and test_fraction"
        )
    for name in SPLITS:
        start, stop = splits.span(name)
        if stop > start and stop - start <= data.horizon:
            raise TBPTTError(
                f"the {name} split has {stop - start} steps, no more than horizon "
                f"{data.horizon}, so it holds no forecast; lower --horizon or enlarge the split"
            )


def fit_transforms(data: DataConfig, series: Series, splits: Splits) -> Transforms:
    """The transforms of a run, fitted on its training split."""
    train = series.rows(0, splits.train)
    season = data.season if data.season is not None else season_of(train.times)
    if season is not None and season >= splits.train:
        raise TBPTTError(
            f"season {season} is not shorter than the {splits.train} training steps; lower --season"
        )
    return Transforms(
        tuple(file_inputs(series, data)),
        series.target_names,
        tuple(data.calendar or ()),
        Normalizer.fit(raw_inputs(train, data.input_changes)),
        Normalizer.fit(train.targets),
        data.scale_targets,
        data.input_changes,
        data.base,
        data.horizon,
        season,
        LinearAR.fit(train.targets, data.ar_lags, data.horizon),
    )


def origins_of(splits: Splits, name: str, horizon: int) -> np.ndarray:
    """The forecast origins of split ``name``: t and its leads t+1 .. t+H inside it."""
    start, stop = splits.span(name)
    return np.arange(start, stop - horizon)


def run_data(
    config: RunConfig, saved: dict[str, Any] | None
) -> tuple[Streams, Streams, dict[str, int], dict[str, Any]]:
    """A CSV run's training streams, its warm-state validation stream, the model's
    sizes and the checkpoint extras (``forecast``: transforms and splits)."""
    data = config.data
    series, splits = load_series(data)
    if saved is not None and saved.get("forecast") is not None:
        transforms = Transforms.from_state_dict(saved["forecast"]["transforms"])
    else:
        transforms = fit_transforms(data, series, splits)
    inputs, targets = transforms.model_inputs(series), transforms.model_targets(series)
    train_origins = origins_of(splits, "train", data.horizon)[transforms.first_origin :]
    steps = config.train.batch_steps(len(train_origins))
    batch_size = max(1, min(data.batch_size, len(train_origins) // steps))
    if batch_size < data.batch_size:
        logger.info("batch_size %d -> %d: each stream holds a window", data.batch_size, batch_size)
    steps = config.train.batch_steps(len(train_origins) // batch_size)
    train = Streams(inputs[train_origins], targets[train_origins], batch_size, steps)
    last = origins_of(splits, "validation", data.horizon)[-1] + 1
    valid = np.arange(last) >= splits.train  # warm on the training steps, score validation
    validation = Streams(inputs[:last], targets[:last], 1, CHUNK, valid=valid, allow_short=True)
    sizes = {"input_size": inputs.shape[1], "output_size": targets.shape[1]}
    extra = {
        "normalizer": transforms.inputs.state_dict(),
        "columns": {"inputs": list(series.input_names), "targets": list(series.target_names)},
        "forecast": {
            "transforms": transforms.state_dict(),
            "splits": splits.record(series.times),
            "bounds": [splits.train, splits.validation, splits.end],
        },
    }
    return train, validation, sizes, extra


@torch.no_grad()
def model_outputs(model: nn.Module, inputs: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Run ``model`` over ``inputs: (N, F)`` as one stream from a zero state, the
    state carried from chunk to chunk: outputs ``(N, H * O)``. The outputs, not a
    loss: they become forecasts in the data's units, scored per origin and lead beside
    the baselines, which :func:`tbptt.training.evaluate`'s mean loss over batches is not."""
    model.eval()
    state, pieces = None, []
    for start in range(0, len(inputs), CHUNK):
        chunk = torch.as_tensor(inputs[start : start + CHUNK], device=device)[:, None]
        outputs, state = model(chunk, state)
        pieces.append(outputs[:, 0].float().cpu().numpy())
    return np.concatenate(pieces)


def forecast(
    model: nn.Module, transforms: Transforms, series: Series, origins: np.ndarray, device: str
) -> np.ndarray:
    """The model's forecasts from ``origins`` in the data's units, reading the series
    from its first step: ``(M, H, O)``."""
    outputs = model_outputs(model, transforms.model_inputs(series)[: origins[-1] + 1], device)
    return transforms.forecasts(series, outputs[origins], origins)


def score(
    model: nn.Module, transforms: Transforms, series: Series, origins: np.ndarray, device: str
) -> dict[str, Any]:
    """The model and every baseline on ``origins``: metrics in the data's units and
    scaled (``mse_scaled``, ``mae_scaled``), per lead, and the skill."""
    horizon, targets = transforms.horizon, series.targets.astype(np.float64)
    truth = lead_truth(targets, origins, horizon)
    methods = {"model": forecast(model, transforms, series, origins, device)}
    methods["persistence"] = persistence(targets, origins, horizon)
    if transforms.season is not None:
        methods[f"seasonal_naive_{transforms.season}"] = seasonal_naive(
            targets, origins, horizon, transforms.season
        )
    methods[f"linear_ar_{transforms.ar.lags}"] = transforms.ar.predict(targets, origins)
    report: dict[str, Any] = {"origins": len(origins), "horizon": horizon, "methods": {}}
    for name, values in methods.items():
        metrics = forecast_metrics(values, truth)
        scaled = forecast_metrics(
            transforms.targets.transform(values), transforms.targets.transform(truth)
        )
        metrics.update(mse_scaled=scaled["mse"], mae_scaled=scaled["mae"])
        report["methods"][name] = metrics
    reference = report["methods"]["persistence"]["mse"]
    for metrics in report["methods"].values():
        metrics["skill"] = skill(metrics["mse"], reference)
    report["verdict"] = verdict(report["methods"])
    return report


def verdict(methods: dict[str, dict[str, Any]]) -> str:
    """The model against persistence and the best baseline, in words."""
    model = methods["model"]
    baselines = {name: m["mse"] for name, m in methods.items() if name != "model"}
    best = min(baselines, key=baselines.__getitem__)
    if not model["skill"] > 0:
        return (
            f"the model LOSES to persistence (repeating the last value): skill "
            f"{model['skill']:.3f}; train longer, or trust the persistence forecast"
        )
    if model["mse"] > baselines[best]:
        return (
            f"the model beats persistence (skill {model['skill']:.3f}) but loses to "
            f"{best} (MSE {baselines[best]:.4g} against {model['mse']:.4g})"
        )
    return f"the model beats every baseline: skill {model['skill']:.3f} over persistence"


def evaluate_run(
    model: nn.Module,
    config: RunConfig,
    saved: dict[str, Any],
    file: str | None,
    split: str,
    warmup: int,
    device: str,
) -> dict[str, Any]:
    """``tbptt eval`` of a CSV run: its split (warm state) or a new file from step
    ``warmup`` on, scored beside the baselines."""
    transforms = Transforms.from_state_dict(saved["forecast"]["transforms"])
    series, origins, where = scored_origins(config, transforms, file, split, warmup)
    return {"data": where, **score(model, transforms, series, origins, device)}


def scored_origins(
    config: RunConfig, transforms: Transforms, file: str | None, split: str, warmup: int
) -> tuple[Series, np.ndarray, str]:
    """The series to read, the origins to score in it and what they are."""
    data, horizon = config.data, transforms.horizon
    if file is None:
        series, splits = load_series(data)
        origins = origins_of(splits, split, horizon)
        if len(origins) == 0:
            raise TBPTTError(
                f"the run has no {split} split; give --test-fraction or --test-file when "
                "training, or eval the validation split"
            )
        return series, origins, f"{split} split (state warmed on the steps before it)"
    series = read_new_file(data, transforms, file)
    first = max(warmup, transforms.history)
    origins = np.arange(first, len(series) - horizon)
    if len(origins) == 0:
        raise file_error(
            file,
            f"has {len(series)} steps: after {first} of warm-up and history and a "
            f"horizon of {horizon} no forecast is left",
            "give a longer file or a smaller --warmup",
        )
    return series, origins, f"{file} from step {first} (state warmed on the steps before it)"


def read_new_file(data: DataConfig, transforms: Transforms, file: str) -> Series:
    """A new file read with the run's columns, which it must hold."""
    series = read_series(
        data, file, list(transforms.input_columns), list(transforms.target_columns)
    )
    return series


@dataclass
class ForecastRun:
    """A trained forecasting run: its model, the transforms between files and the
    model, and its config (:func:`tbptt.load_run`)."""

    model: nn.Module
    """The network, in eval mode; it maps scaled inputs to scaled outputs."""
    transforms: Transforms
    """Columns, scaling, horizon, season and the fitted linear AR baseline."""
    config: RunConfig
    """The run's resolved config."""
    device: str = "cpu"

    @property
    def horizon(self) -> int:
        """H: the leads forecast at every step."""
        return self.transforms.horizon

    def read(self, path: str) -> Series:
        """A CSV file read as the run reads its data (its columns, calendar features)."""
        return read_new_file(self.config.data, self.transforms, str(path))

    def predict(self, data: str | Series) -> np.ndarray:
        """Forecasts from every step of ``data`` (a CSV file with the run's columns, or
        a series from :meth:`read`), read as one stream from its first step:
        ``(N, H, O)`` in the data's units; row t forecasts steps t+1 .. t+H, so the
        last row forecasts beyond the data. Rows before ``transforms.first_origin``
        (the linear AR base's lags) are NaN."""
        series = self.read(data) if not isinstance(data, Series) else data
        first = self.transforms.first_origin
        origins = np.arange(first, len(series))
        forecasts = forecast(self.model, self.transforms, series, origins, self.device)
        return np.concatenate([np.full((first, *forecasts.shape[1:]), np.nan), forecasts])
