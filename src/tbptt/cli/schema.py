"""What a run's checkpoint must hold, checked when it is opened: a checkpoint whose
``extra`` (or position) was edited is refused in one line naming the checkpoint and
the field, instead of failing later with a ``TypeError`` or ``KeyError``.

``extra`` holds ``config`` (a table, checked as a config file is), ``sizes`` (the
model's ``vocab_size``, ``input_size``, ``output_size``: integers >= 1),
``vocabulary`` (none, or a table of ``level`` and ``tokens``, checked as a
vocabulary file is), ``normalizer`` (none, or ``mean`` and ``std`` lists of numbers),
``columns`` (none, or ``inputs`` and ``targets`` lists of names) and, for a CSV run,
``forecast`` (a table whose ``transforms`` fit each other and the model's sizes).
``position`` holds ``epoch``, ``batch`` and ``window``: integers >= 0.

A checkpoint also names the data files its run read. ``tbptt eval``, ``predict`` and
``advise`` without FILE read them only when the run directory the checkpoint lies in
(``RUN/checkpoints/``) has a ``config.json`` naming the same files
(:func:`check_recorded_files`): a file is never read because a checkpoint alone
names it (a crafted one could name any path on the machine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tbptt.cli.runconfig import PATH_FIELDS, RunConfig
from tbptt.data.text import LEVELS, token_problem
from tbptt.errors import TBPTTError, quoted
from tbptt.files import file_error

SIZES = ("vocab_size", "input_size", "output_size")
POSITION = ("epoch", "batch", "window")
FIX = "give a checkpoint as tbptt wrote it (unedited), or retrain"
TRANSFORMS = (
    "input_columns",
    "target_columns",
    "calendar",
    "inputs",
    "targets",
    "scale_targets",
    "input_changes",
    "base",
    "horizon",
    "season",
    "ar",
)
"""The fields of a CSV run's saved transforms (``tbptt.forecast.Transforms``)."""
BASES = ("none", "last", "linear_ar")
NUMBER = (int, float)


def check_saved(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Refuse a checkpoint whose ``extra`` or ``position`` breaks the schema above."""
    extra = state.get("extra")
    if not isinstance(extra, dict) or not isinstance(extra.get("config"), dict):
        raise bad(path, "extra.config", "is missing (it was not written by tbptt train)")
    sizes = extra.get("sizes")
    if not isinstance(sizes, dict):
        raise bad(path, "extra.sizes", f"is {quoted(sizes)}, not a table of sizes")
    for key, value in sizes.items():
        if key not in SIZES:
            raise bad(path, f"extra.sizes.{key}", f"is not one of {', '.join(SIZES)}")
        if not whole(value, 1):
            raise bad(path, f"extra.sizes.{key}", f"is {quoted(value)}, not an integer >= 1")
    check_vocabulary(path, extra.get("vocabulary"))
    check_lists(path, "normalizer", extra.get("normalizer"), ("mean", "std"), NUMBER)
    check_lists(path, "columns", extra.get("columns"), ("inputs", "targets"), (str,))
    if extra.get("forecast") is not None:
        check_forecast(path, extra["forecast"], sizes)
    position = state.get("position")
    if position is not None:
        if not isinstance(position, dict):
            raise bad(path, "position", f"is {quoted(position)}, not a table")
        for key in POSITION:
            if not whole(position.get(key), 0):
                problem = f"is {quoted(position.get(key))}, not an integer >= 0"
                raise bad(path, f"position.{key}", problem)


def check_vocabulary(path: str | os.PathLike[str], vocabulary: Any) -> None:
    """A saved vocabulary: none, or ``level`` and valid ``tokens``."""
    if vocabulary is None:
        return
    if not isinstance(vocabulary, dict):
        raise bad(path, "extra.vocabulary", f"is {quoted(vocabulary)}, not a table")
    level, tokens = vocabulary.get("level"), vocabulary.get("tokens")
    if level not in LEVELS:
        raise bad(path, "extra.vocabulary.level", f"is {quoted(level)}, not 'char' or 'word'")
    if not isinstance(tokens, list | tuple):
        raise bad(path, "extra.vocabulary.tokens", f"is {quoted(tokens)}, not a list")
    if (problem := token_problem(tokens, level)) is not None:
        raise bad(path, "extra.vocabulary.tokens", problem)


def check_forecast(path: str | os.PathLike[str], forecast: Any, sizes: dict[str, Any]) -> None:
    """A CSV run's ``forecast``: its ``transforms`` (columns, scaling, base, horizon,
    season, linear AR), which must fit each other and the model's sizes."""
    if not isinstance(forecast, dict):
        raise bad(path, "extra.forecast", f"is {quoted(forecast)}, not a table")
    field = "extra.forecast.transforms"
    transforms = forecast.get("transforms")
    if not isinstance(transforms, dict) or set(transforms) != set(TRANSFORMS):
        raise bad(path, field, f"is {quoted(transforms)}, not a table of {', '.join(TRANSFORMS)}")
    for key in ("input_columns", "target_columns", "calendar"):
        if not strings(transforms[key]):
            raise bad(path, f"{field}.{key}", f"is {quoted(transforms[key])}, not a list of names")
    for key in ("inputs", "targets"):
        check_lists(path, f"forecast.transforms.{key}", transforms[key], ("mean", "std"), NUMBER)
    for key in ("scale_targets", "input_changes"):
        if not isinstance(transforms[key], bool):
            raise bad(path, f"{field}.{key}", f"is {quoted(transforms[key])}, not true or false")
    if transforms["base"] not in BASES:
        raise bad(
            path, f"{field}.base", f"is {quoted(transforms['base'])}, not one of {', '.join(BASES)}"
        )
    horizon, season, ar = transforms["horizon"], transforms["season"], transforms["ar"]
    if not whole(horizon, 1):
        raise bad(path, f"{field}.horizon", f"is {quoted(horizon)}, not an integer >= 1")
    if season is not None and not whole(season, 1):
        raise bad(path, f"{field}.season", f"is {quoted(season)}, not an integer >= 1 or none")
    outputs = len(transforms["target_columns"])
    if (
        sizes.get("output_size") != horizon * outputs
        or len(transforms["targets"]["mean"]) != outputs
    ):
        problem = f"do not fit {outputs} target columns, a horizon of {horizon} and the model"
        raise bad(path, field, problem)
    if sizes.get("input_size") != len(transforms["inputs"]["mean"]):
        raise bad(path, f"{field}.inputs", "does not fit the model's input_size")
    if not (
        isinstance(ar, dict)
        and set(ar) == {"lags", "horizon", "coefficients"}
        and whole(ar["lags"], 1)
        and ar["horizon"] == horizon
        and matrix(ar["coefficients"], 1 + ar["lags"] * outputs, horizon * outputs)
    ):
        problem = f"is not a linear AR of the run's {outputs} targets and horizon {horizon}"
        raise bad(path, f"{field}.ar", problem)


def strings(value: Any) -> bool:
    """Whether ``value`` is a list of strings."""
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


def matrix(value: Any, rows: int, columns: int) -> bool:
    """Whether ``value`` is a ``rows`` x ``columns`` list of lists of numbers."""
    return (
        isinstance(value, list | tuple)
        and len(value) == rows
        and all(
            isinstance(row, list | tuple)
            and len(row) == columns
            and all(isinstance(item, NUMBER) and not isinstance(item, bool) for item in row)
            for row in value
        )
    )


def check_lists(
    path: str | os.PathLike[str], name: str, value: Any, keys: tuple[str, ...], kinds: tuple
) -> None:
    """None, or a table of exactly ``keys``, each a list of ``kinds``."""
    if value is None:
        return
    if not isinstance(value, dict) or set(value) != set(keys):
        raise bad(path, f"extra.{name}", f"is {quoted(value)}, not a table of {', '.join(keys)}")
    for key in keys:
        items = value[key]
        if not isinstance(items, list | tuple) or not all(
            isinstance(item, kinds) and not isinstance(item, bool) for item in items
        ):
            raise bad(path, f"extra.{name}.{key}", f"is {quoted(items)}, not a list")


def whole(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def bad(path: str | os.PathLike[str], field: str, problem: str) -> TBPTTError:
    """The error for a checkpoint whose ``field`` breaks the schema."""
    return file_error(path, problem, FIX, where=field)


def check_recorded_files(checkpoint: Path, config: RunConfig) -> None:
    """Refuse to read the data files ``config`` (the checkpoint's) names unless the
    ``config.json`` of the run directory holding ``checkpoint`` names the same."""
    named = {
        name: getattr(config.data, name)
        for name in PATH_FIELDS
        if getattr(config.data, name) is not None
    }
    if not named:
        return
    run_config = checkpoint.parent.parent / "config.json"
    recorded: Any = None
    if checkpoint.parent.name == "checkpoints" and run_config.is_file():
        try:
            recorded = json.loads(run_config.read_text(encoding="utf-8")).get("data")
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, AttributeError):
            recorded = None
    if isinstance(recorded, dict) and all(recorded.get(k) == v for k, v in named.items()):
        return
    files = ", ".join(quoted(value) for value in named.values())
    raise file_error(
        checkpoint,
        f"names data files ({files}) that no run directory around it confirms (its "
        "config.json names others, or there is none), and tbptt reads no file only a "
        "checkpoint names",
        "give the data to read: tbptt eval CHECKPOINT FILE (or evaluate the run directory)",
    )
