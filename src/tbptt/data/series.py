"""Numeric time series from CSV files and NumPy arrays, and their normalisation.

A :class:`Series` holds N time steps of input columns ``inputs: (N, F)`` and target
columns ``targets: (N, O)`` (float32), aligned in time: row t is time t, labelled
``times[t]`` when the file has a time column (:mod:`tbptt.data.calendar`). Forecasting
pairs come from :meth:`Series.pairs`: input x_t with the targets of the next H steps
y_{t+1} .. y_{t+H}, so ``horizon=1`` is next-step prediction. The pairs feed
:class:`tbptt.streams.Streams`.

Every value must be a finite float32: a CSV cell that is empty, not a number, NaN,
infinite or too large is an error naming the file, the line and the column.

:class:`Normalizer` scales each column to zero mean and unit standard deviation,
fitted on the training part only (the validation part must not leak into it)::

    series = read_csv("weather.csv", inputs=["temp", "wind"], targets=["temp"])
    train, validation = series.split(0.1)
    scale = Normalizer.fit(train.inputs)
    inputs, targets = train.pairs(horizon=24)   # targets: (N - 24, 24 * O)
    inputs = scale.transform(inputs)
"""

from __future__ import annotations

import csv
import difflib
import itertools
import math
import os
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from tbptt.data.calendar import parse_time
from tbptt.data.text import split_point
from tbptt.errors import TBPTTError, quoted
from tbptt.files import check_file, decode_error, file_error

FLOAT32_MAX = float(np.finfo(np.float32).max)

Values = TypeVar("Values", Tensor, np.ndarray)


@dataclass(frozen=True, eq=False)
class Series:
    """N aligned time steps of inputs and targets; row t is time t."""

    inputs: np.ndarray
    """``(N, F)`` float32, every value finite."""
    targets: np.ndarray
    """``(N, O)`` float32, every value finite."""
    input_names: tuple[str, ...]
    """The F input column names."""
    target_names: tuple[str, ...]
    """The O target column names."""
    times: tuple[str, ...] | None = None
    """The N cells of the time column as written (never an input), or None."""

    def __post_init__(self) -> None:
        if self.inputs.ndim != 2 or self.targets.ndim != 2:
            raise TBPTTError("Series inputs and targets must be 2-D (N, F); use from_arrays")
        if len(self.inputs) != len(self.targets) or len(self.inputs) == 0:
            raise TBPTTError(
                f"Series inputs have {len(self.inputs)} rows and targets {len(self.targets)}; "
                "give the same number (at least one)"
            )
        if len(self.input_names) != self.inputs.shape[1]:
            raise TBPTTError("Series input_names must name every input column")
        if len(self.target_names) != self.targets.shape[1]:
            raise TBPTTError("Series target_names must name every target column")
        if self.times is not None and len(self.times) != len(self.inputs):
            raise TBPTTError("Series times must label every row")

    def __len__(self) -> int:
        return len(self.inputs)

    @classmethod
    def from_arrays(
        cls,
        inputs: Any,
        targets: Any = None,
        *,
        input_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
    ) -> Series:
        """A series from ``inputs: (N, F)`` or ``(N,)`` and ``targets: (N, O)`` or ``(N,)``.

        ``targets=None`` means the inputs themselves (predict the next value of every
        column). Names default to ``input_0, ...`` and ``target_0, ...``.
        """
        checked = as_columns(inputs, "inputs")
        names = default_names(checked, input_names, "input")
        if targets is None:
            return cls(checked, checked, names, names)
        checked_targets = as_columns(targets, "targets")
        target_names = default_names(checked_targets, target_names, "target")
        return cls(checked, checked_targets, names, target_names)

    def pairs(self, horizon: int = 1, *, offset: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Forecasting pairs: ``inputs: (M, F)`` at origins t and ``targets: (M, H * O)``.

        The targets of origin t are y_{t+offset} .. y_{t+offset+H-1}, lead after lead
        (column ``h * O + o`` is lead h + 1 of target o), so ``horizon=1`` is the
        next-step forecast and ``offset=0`` pairs each input with the targets of its own
        step. ``M = N - offset - H + 1``: no pair reaches past the end of the series.
        """
        for name, value, low in (("horizon", horizon, 1), ("offset", offset, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise TBPTTError(f"{name}={quoted(value)} must be an integer >= {low}")
        origins = len(self) - offset - horizon + 1
        if origins < 1:
            raise TBPTTError(
                f"horizon={horizon} with offset={offset} needs more than {len(self)} steps; "
                "use a smaller horizon or a longer series (or split)"
            )
        targets = np.concatenate(
            [self.targets[offset + lead : offset + lead + origins] for lead in range(horizon)],
            axis=1,
        )
        return self.inputs[:origins], targets

    def rows(self, start: int, stop: int) -> Series:
        """Steps ``[start, stop)`` as a series of their own (views)."""
        times = None if self.times is None else self.times[start:stop]
        return Series(
            self.inputs[start:stop],
            self.targets[start:stop],
            self.input_names,
            self.target_names,
            times,
        )

    def split(self, validation_fraction: float = 0.1) -> tuple[Series, Series]:
        """``(train, validation)`` cut in time: the last steps go to validation."""
        start = split_point(len(self), validation_fraction, "time steps")
        return self.rows(0, start), self.rows(start, len(self))


def as_columns(values: Any, name: str) -> np.ndarray:
    """``values`` as a float32 ``(N, F)`` array; a 1-D array becomes one column.

    Errors name the index of the first value that is not finite in float32.
    """
    array_values = np.asarray(values)
    if array_values.dtype.kind not in "iuf":
        raise TBPTTError(f"{name} hold {array_values.dtype} values; give a numeric array")
    if array_values.ndim == 1:
        array_values = array_values[:, None]
    if array_values.ndim != 2 or len(array_values) == 0:
        raise TBPTTError(
            f"{name} have shape {np.shape(values)}; give a non-empty (N, F) or (N,) array"
        )
    with np.errstate(over="ignore"):
        result = array_values.astype(np.float32)
    bad = np.argwhere(~np.isfinite(result))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        value = array_values[row, column].item()
        raise TBPTTError(
            f"{name}[{row}, {column}] is {quoted(value)}, not a finite float32; "
            "fill in or drop the bad values before making a Series"
        )
    return result


def default_names(values: np.ndarray, names: Sequence[str] | None, prefix: str) -> tuple[str, ...]:
    """``names`` checked against the columns of ``values``, or ``prefix_0, ...``."""
    if names is None:
        return tuple(f"{prefix}_{i}" for i in range(values.shape[1]))
    if len(names) != values.shape[1]:
        raise TBPTTError(
            f"{len(names)} {prefix} names for {values.shape[1]} columns; give one per column"
        )
    return tuple(names)


def read_csv(
    path: str | os.PathLike[str],
    *,
    inputs: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    delimiter: str = ",",
    time_column: str | None = None,
    exclude: Sequence[str] = (),
) -> Series:
    """A series from a CSV file with a header row, columns chosen by name.

    The time column (``time_column``, or else the first column when its first cell is
    a date or time, not a number) is kept as ``Series.times`` and is never an input.
    ``inputs=None`` takes every other column but those in ``exclude``;
    ``targets=None`` takes the input columns. Every cell of a chosen column must be a
    finite number (surrounding spaces are ignored); other columns (labels) are not
    parsed. Blank lines are skipped. Errors name the file, the line (1-based, as an
    editor counts) and the column.
    """
    path = check_file(path, "CSV file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file, delimiter=delimiter, strict=True)
            try:
                columns = Columns(inputs, targets, time_column, tuple(exclude))
                return parse_csv(path, reader, columns)
            except csv.Error as error:
                raise csv_error(path, reader.line_num, error) from None
    except UnicodeDecodeError:
        raise decode_error(path) from None


def csv_error(path: str | os.PathLike[str], line: int, error: csv.Error) -> TBPTTError:
    """The error for a line the CSV reader cannot read: a cell over its length limit,
    or bad quoting."""
    if "field larger than field limit" in str(error):
        limit = csv.field_size_limit()
        problem = f"a cell is longer than {limit:,} characters, the most a CSV cell may have"
        fix = "give a file of numbers (a quote left open also runs a cell on to the end)"
        return file_error(path, problem, fix, where=f"line {line}")
    fix = "fix the quoting there (a quote inside a cell is written twice)"
    return file_error(path, f"malformed CSV ({error})", fix, where=f"line {line}")


@dataclass(frozen=True)
class Columns:
    """Which columns of a CSV file to read, by name (see :func:`read_csv`)."""

    inputs: Sequence[str] | None
    targets: Sequence[str] | None
    time: str | None
    exclude: tuple[str, ...]


def parse_csv(path: os.PathLike[str], reader: Any, columns: Columns) -> Series:
    """Read the header and rows from ``reader`` and pick the columns (see ``read_csv``)."""
    header = read_header(path, reader)
    first = next((row for row in reader if row), None)
    rows = itertools.chain([] if first is None else [first], reader)
    time = find_time_column(path, header, columns.time, first)
    pick_columns(path, header, list(columns.exclude) or None, "exclude")
    if columns.inputs is None:
        skipped = {*columns.exclude, *([] if time is None else [header[time]])}
        input_columns = [i for i, name in enumerate(header) if name not in skipped]
        if not input_columns:
            raise file_error(path, "has no column left for inputs", "exclude fewer columns")
    else:
        input_columns = pick_columns(path, header, columns.inputs, "inputs")
    if columns.targets is None:
        target_columns = input_columns
    else:
        target_columns = pick_columns(path, header, columns.targets, "targets")
    if time is not None and time in {*input_columns, *target_columns}:
        problem = f"{quoted(header[time])} is the time column, so it cannot be an input or target"
        raise file_error(path, problem, "leave it out of inputs and targets", where="the header")
    used = sorted(set(input_columns) | set(target_columns))
    table, times = read_rows(path, rows, reader, header, used, time)
    position = {column: i for i, column in enumerate(used)}
    return Series(
        table[:, [position[c] for c in input_columns]],
        table[:, [position[c] for c in target_columns]],
        tuple(header[c] for c in input_columns),
        tuple(header[c] for c in target_columns),
        times,
    )


def find_time_column(
    path: os.PathLike[str], header: list[str], name: str | None, first: list[str] | None
) -> int | None:
    """The index of the time column: ``name``'s, or the first column's when its first
    cell parses as a date or time (and not as a number), else None."""
    if name is not None:
        return pick_columns(path, header, [name], "time_column")[0]
    if first and parse_number(first[0].strip()) is None and parse_time(first[0].strip()):
        return 0
    return None


def read_header(path: os.PathLike[str], reader: Any) -> list[str]:
    """The column names on the first non-blank line, stripped, checked unique."""
    header = next((row for row in reader if row), None)
    if header is None:
        raise file_error(path, "holds only blank lines", "give a header row and data rows")
    names = [name.strip() for name in header]
    where = f"line {reader.line_num} (the header)"
    for index, name in enumerate(names):
        if not name:
            problem = f"column {index + 1} has no name"
            raise file_error(path, problem, "name every column in the header", where=where)
        if name in names[:index]:
            raise file_error(
                path, f"two columns are named {quoted(name)}", "rename one", where=where
            )
    if all(parse_number(name) is not None for name in names):
        problem = "the first line holds numbers, not column names"
        raise file_error(path, problem, "add a header row naming the columns", where=where)
    return names


def pick_columns(
    path: os.PathLike[str], header: list[str], names: Sequence[str] | None, role: str
) -> list[int]:
    """The indices of the columns ``names`` (all columns for ``None``)."""
    if names is None:
        return list(range(len(header)))
    if isinstance(names, str):
        names = [names]
    where = "the header"
    if len(names) == 0:
        raise file_error(path, f"{role}=[] chooses no column", "name at least one column")
    for name in names:
        if name not in header:
            close = difflib.get_close_matches(name, header, n=1)
            hint = f"did you mean {quoted(close[0])}? " if close else ""
            problem = f"no column {quoted(name)} (in {role})"
            fix = f"{hint}the columns are {', '.join(map(repr, header))}"
            raise file_error(path, problem, fix, where=where)
    if len(set(names)) != len(names):
        raise file_error(path, f"{role} names a column twice", "name each column once")
    return [header.index(name) for name in names]


def read_rows(
    path: os.PathLike[str],
    rows: Any,
    reader: Any,
    header: list[str],
    used: list[int],
    time: int | None,
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """The cells of columns ``used`` of every data row: float32 ``(N, len(used))``, and
    the time column's cells (each a date, time or number) if ``time`` is given."""
    values, times = array("d"), []
    for row in rows:
        if not row:
            continue
        if len(row) != len(header):
            problem = f"{len(row)} cells, but the header has {len(header)} columns"
            fix = "give every row one cell per column (an empty cell is still a cell)"
            raise file_error(path, problem, fix, where=f"line {reader.line_num}")
        if time is not None:
            stamp = row[time].strip()
            if parse_time(stamp) is None and parse_number(stamp) is None:
                where = f"line {reader.line_num}, column {quoted(header[time])} (the time column)"
                problem = f"{quoted(stamp)} is not a date, time or number"
                fix = "write ISO 8601 (2020-01-31 or 2020-01-31T13:00), or name --time-column"
                raise file_error(path, problem, fix, where=where)
            times.append(stamp)
        for column in used:
            cell = row[column].strip()
            number = parse_number(cell)
            if number is None:
                where = f"line {reader.line_num}, column {quoted(header[column])}"
                raise file_error(path, *cell_problem(cell), where=where)
            values.append(number)
    if not values:
        raise file_error(path, "has a header but no data rows", "add data rows")
    table = np.frombuffer(values, dtype=np.float64).reshape(-1, len(used)).astype(np.float32)
    return table, None if time is None else tuple(times)


def to_float(cell: str) -> float:
    """``float(cell)``, but without the ``_`` digit separators Python's literals allow
    (``1_000`` is no number in a CSV file): ``ValueError`` for those too."""
    if "_" in cell:
        raise ValueError(cell)
    return float(cell)


def parse_number(cell: str) -> float | None:
    """``cell`` as a float that is finite in float32, or ``None``."""
    try:
        number = to_float(cell)
    except ValueError:
        return None
    return number if math.isfinite(number) and abs(number) <= FLOAT32_MAX else None


def cell_problem(cell: str) -> tuple[str, str]:
    """Why ``cell`` is not a usable number, and the fix."""
    if not cell:
        return "the cell is empty (a missing value)", "fill it in or remove the row"
    try:
        number = to_float(cell)
    except ValueError:
        fix = "write a number there, or leave the column out of inputs/targets"
        return f"{quoted(cell)} is not a number", fix
    if math.isfinite(number):
        return f"{quoted(cell)} is too large for float32", "rescale the column"
    return f"{quoted(cell)} is not finite", "replace it with a finite number or remove the row"


@dataclass(frozen=True)
class Normalizer:
    """Per-column ``(x - mean) / std``, fitted on training data only.

    A constant column (every value equal) gets ``std = 1``, so it maps to zeros
    instead of dividing by zero.
    """

    mean: tuple[float, ...]
    """The F column means."""
    std: tuple[float, ...]
    """The F column standard deviations (population, ``ddof=0``), all positive."""

    def __post_init__(self) -> None:
        values = (*self.mean, *self.std)
        if len(self.mean) != len(self.std) or not self.mean:
            raise TBPTTError("Normalizer mean and std must be non-empty and of equal length")
        if not all(isinstance(v, float) and math.isfinite(v) for v in values):
            raise TBPTTError("Normalizer mean and std must hold finite floats")
        if min(self.std) <= 0:
            raise TBPTTError("Normalizer std must be positive; refit on the training data")

    @classmethod
    def fit(cls, values: Any) -> Normalizer:
        """The normalizer of ``values: (..., F)``: statistics over every leading axis."""
        data = np.asarray(values, dtype=np.float64)
        if data.ndim < 2 or data.shape[-1] == 0 or data.size == 0:
            raise TBPTTError(
                f"fit needs values of shape (N, F), not {data.shape}; "
                "for a single column use values[:, None]"
            )
        data = data.reshape(-1, data.shape[-1])
        if not np.isfinite(data).all():
            raise TBPTTError("fit got values that are not finite; clean the data first")
        constant = data.max(axis=0) == data.min(axis=0)
        std = np.where(constant, 1.0, data.std(axis=0))
        return cls(tuple(map(float, data.mean(axis=0))), tuple(map(float, std)))

    def transform(self, values: Values) -> Values:
        """``(values - mean) / std`` for ``values: (..., F)``, an array or a tensor."""
        values, mean, std = self.statistics(values)
        return (values - mean) / std  # type: ignore[no-any-return]

    def inverse_transform(self, values: Values) -> Values:
        """``values * std + mean`` for ``values: (..., F)``: back to the data's units."""
        values, mean, std = self.statistics(values)
        return values * std + mean  # type: ignore[no-any-return]

    def statistics(self, values: Values) -> tuple[Values, Any, Any]:
        """``values`` (as floats), ``mean`` and ``std`` in their type, dtype and device.

        Floating values keep their dtype; integer values become float32.
        """
        if values.ndim == 0 or values.shape[-1] != len(self.mean):
            raise TBPTTError(
                f"values of shape {tuple(values.shape)} do not end in the "
                f"{len(self.mean)} columns this normalizer was fitted on"
            )
        if isinstance(values, Tensor):
            dtype = values.dtype if values.is_floating_point() else torch.float32
            mean = torch.tensor(self.mean, dtype=dtype, device=values.device)
            std = torch.tensor(self.std, dtype=dtype, device=values.device)
            return values.to(dtype), mean, std
        values = np.asarray(values)
        dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float32)
        mean, std = np.asarray(self.mean, dtype=dtype), np.asarray(self.std, dtype=dtype)
        return values.astype(dtype, copy=False), mean, std

    def state_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}``: plain floats, ready for JSON."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Normalizer:
        """The normalizer saved by :meth:`state_dict`, its structure checked."""
        if not isinstance(state, Mapping) or set(state) != {"mean", "std"}:
            raise TBPTTError("a Normalizer state holds exactly 'mean' and 'std'; use state_dict()")
        mean, std = state["mean"], state["std"]
        if not all(isinstance(v, list | tuple) for v in (mean, std)):
            raise TBPTTError("Normalizer state 'mean' and 'std' must be lists of floats")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (*mean, *std)):
            raise TBPTTError("Normalizer state 'mean' and 'std' must hold only numbers")
        return cls(tuple(map(float, mean)), tuple(map(float, std)))
