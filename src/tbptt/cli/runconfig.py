"""What a run is: typed configuration, read from TOML files and command-line options.

Each section is a dataclass whose fields carry a docstring (the string literal after
the field). Those docstrings are the single source of the command line's help text
(:func:`field_docs`), and the field types are the single source of how options and
file values are checked (:func:`convert`), so help, files and checks never drift
apart. A config file has the sections ``[model]``, ``[data]`` and ``[train]`` and the
top-level keys ``run_dir`` and ``threads``; a run's resolved ``config.json`` is a valid
config file too.

Precedence: the fields' defaults, then the file, then command-line options.

The names a field may take (cells, tasks, devices) come from modules that import
torch, so they are imported where a config is checked: the parser, built from these
classes, then loads without torch (``tbptt --help`` answers at once).
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import math
import sys
import textwrap
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tbptt.errors import TBPTTError, check_non_negative, check_probability, nearest, one_of, quoted
from tbptt.files import check_file, decode_error, file_error, nesting_error
from tbptt.training.config import TrainConfig, check_seed, check_types

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CSV_ONLY = ("inputs", "targets", "exclude", "time_column", "calendar", "season")
"""Options that only a CSV file's run reads (unset by default)."""
TEXT_ONLY = {"level": "char", "min_count": 1}
"""Options that only a text file's run reads, with their defaults."""
SOURCES = ("text", "csv", "tokens", "task")
"""The data source fields of :class:`DataConfig`; a run has exactly one."""

PATH_FIELDS = ("text", "csv", "tokens", "vocabulary", "validation_file", "test_file")
"""Fields that name files: made absolute in a resolved config."""
FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a weight or bias the model is set to must fit in one."""


AWD_DROPOUTS = (
    "embedding_dropout",
    "input_dropout",
    "hidden_dropout",
    "output_dropout",
    "weight_drop",
)
"""AWD-LSTM's dropout probabilities of :class:`ModelConfig` (with ``weight_drop``)."""

AWD_PENALTIES = ("activation_penalty", "temporal_penalty")
"""AWD-LSTM's AR and TAR weights of :class:`ModelConfig`."""


@dataclass
class ModelConfig:
    """The recurrent network."""

    cell: str = "lstm"
    """Recurrent cell: elman (tanh RNN), lstm or gru."""
    hidden_size: int = 256
    """Units per recurrent layer."""
    num_layers: int = 2
    """Stacked recurrent layers."""
    embedding_size: int | None = None
    """Width of the token embedding (default: hidden_size); token inputs only."""
    dropout: float = 0.0
    """Dropout on the embedding, between the layers and before the output layer."""
    tie_weights: bool = False
    """Share the embedding matrix with the output layer (Press & Wolf 2017); language
    models only, with embedding_size equal to hidden_size."""
    init: str = "torch"
    """Initialisation: torch (PyTorch's defaults), uniform:A (embedding and output
    weights from U(-A, A), output bias 0, as pytorch/examples with A = 0.1) or
    orthogonal (each gate's recurrent matrix orthogonal)."""
    forget_bias: float | None = None
    """LSTM: the forget gates' starting bias (1 keeps the memory early in training,
    Jozefowicz et al. 2015; default: PyTorch's)."""
    embedding_dropout: float = 0.0
    """AWD-LSTM: drop whole words (rows of the embedding), once per window; token
    inputs only (AWD-LSTM's dropoute, 0.1)."""
    input_dropout: float = 0.0
    """AWD-LSTM: locked dropout on the inputs, one mask per stream for the whole
    window (dropouti, 0.65)."""
    hidden_dropout: float = 0.0
    """AWD-LSTM: locked dropout between the recurrent layers (dropouth, 0.3)."""
    output_dropout: float = 0.0
    """AWD-LSTM: locked dropout on the last layer's outputs (dropout, 0.4)."""
    weight_drop: float = 0.0
    """AWD-LSTM: DropConnect on the hidden-to-hidden weights, once per window
    (wdrop, 0.5)."""
    activation_penalty: float = 0.0
    """AWD-LSTM's AR: add this times the mean square of the last layer's outputs
    (after output dropout) to each window's loss (alpha, 2). Reported losses leave it out."""
    temporal_penalty: float = 0.0
    """AWD-LSTM's TAR: add this times the mean square of the change of the last
    layer's outputs from one step to the next to each window's loss (beta, 1)."""

    def __post_init__(self) -> None:
        from tbptt.models.recurrent import CELLS, parse_init

        check_types(self)

        one_of("cell", self.cell, CELLS)
        bound = parse_init(self.init)
        if bound is not None and bound > FLOAT32_MAX:
            raise TBPTTError(
                f"init {quoted(self.init)}: A is above {FLOAT32_MAX:.4g}, the largest float32 "
                "weight; give a bound like uniform:0.1"
            )
        if self.forget_bias is not None and (
            self.cell != "lstm" or not math.isfinite(self.forget_bias)
        ):
            raise TBPTTError(
                f"forget_bias is for an LSTM and must be finite, got {self.forget_bias} "
                f"with cell {self.cell}; drop it or use --cell lstm"
            )
        if self.forget_bias is not None and abs(self.forget_bias) > FLOAT32_MAX:
            raise TBPTTError(
                f"forget_bias {self.forget_bias} is beyond {FLOAT32_MAX:.4g}, the largest "
                "float32 weight; give a bias like 1"
            )
        at_least(1, hidden_size=self.hidden_size, num_layers=self.num_layers)
        at_least(1, embedding_size=self.embedding_size)
        for name in ("dropout", *AWD_DROPOUTS):
            check_probability(name, getattr(self, name))
        for name in AWD_PENALTIES:
            check_non_negative(name, getattr(self, name))


@dataclass
class DataConfig:
    """The data: one source, laid out as batch_size parallel streams."""

    text: str | None = None
    """A UTF-8 text file to model, next token from the ones before (a language model)."""
    csv: str | None = None
    """A CSV file with a header row: forecast the target columns from the input columns.
    A CSV run's defaults differ: hidden_size 64, num_layers 1, batch_size 8, k1 32,
    epochs 100, restore_best."""
    tokens: str | None = None
    """A token file (raw ids or a 1-D .npy array, see tbptt.data.write_tokens) to model."""
    task: str | None = None
    """A built-in long-dependency task: adding, copy, recall, temporal_order,
    embedded_reber or mackey_glass. Its accuracy counts every step, blanks included;
    the task's own metric (copy_memory_accuracy, ...), reported at the end, counts only
    the steps that test memory."""
    level: str = "char"
    """Text: tokens are characters (char), or words and newlines (word)."""
    min_count: int = 1
    """Text: tokens seen fewer times than this become <unk>."""
    vocabulary: str | None = None
    """Token file: its vocabulary (JSON from Vocabulary.save), to size the model and
    decode generated text (default: ids up to the largest in the file)."""
    dtype: str | None = None
    """Token file: the id type of a raw file (uint16, uint32, int32 or int64; default
    uint16). A .npy file holds its own: a different one given is refused."""
    inputs: list[str] | None = None
    """CSV: the input column names (default: every column but the time column and
    those excluded)."""
    targets: list[str] | None = None
    """CSV: the target column names (default: the input columns)."""
    exclude: list[str] | None = None
    """CSV: columns left out of the default inputs."""
    time_column: str | None = None
    """CSV: the time column, never an input (default: the first column if its first
    cell is a date or time)."""
    calendar: list[str] | None = None
    """CSV: add sine/cosine calendar features of the time column as inputs: any of
    hour, weekday, month, dayofyear."""
    horizon: int = 1
    """CSV: forecast the next horizon steps t+1 .. t+horizon of every target at every
    step t; mackey_glass: predict the value this many steps ahead."""
    test_fraction: float = 0.0
    """CSV, text and tokens: share of the file, from its end, held out for testing
    (validation comes just before it); the split is chronological: train | validation
    | test. The test part is scored at the end of training."""
    validation_file: str | None = None
    """A file to validate on instead of validation_fraction: for CSV, one that follows
    the training file in time; for text or tokens, read like the training file with
    its vocabulary (a corpus' valid.txt)."""
    test_file: str | None = None
    """A file to test on instead of test_fraction (a corpus' test.txt), scored at the
    end of training and by tbptt eval RUN --split test."""
    scale_targets: bool = True
    """CSV: train on targets scaled to zero mean and unit variance on the training
    split (forecasts are mapped back to the data's units)."""
    input_changes: bool = True
    """CSV: the model reads each input's change from the step before instead of its
    level (both scaled on the training split), so levels the training data never
    reached (a trend) do not throw it off."""
    base: str = "linear_ar"
    """CSV: the forecast the model corrects (its outputs are added to it): linear_ar
    (the linear AR baseline's), last (the last observed value: the model predicts the
    change) or none (the model predicts the scaled values)."""
    season: int | None = None
    """CSV: the season of the seasonal naive baseline (default: from the time
    column's spacing: 24 hourly, 7 daily, 12 monthly; none without dates)."""
    ar_lags: int = 24
    """CSV: past values of each target in the linear autoregression baseline."""
    length: int = 50
    """Task: the dependency length: steps per sequence (adding, temporal_order; the
    series length for mackey_glass), blanks before the go marker (copy) or the delay
    (recall, in sequences 10 times as long);
    embedded_reber draws its own lengths."""
    num_sequences: int = 256
    """Task: sequences per data set, a multiple of batch_size (each stream holds whole
    sequences)."""
    validation_fraction: float = 0.1
    """Share of a file, from its end, held out for validation (tasks generate their
    validation data instead)."""
    batch_size: int = 32
    """Parallel streams per batch (B); a CSV run lowers it so that each stream holds
    a window of k1 steps."""
    seed: int = 0
    """Task: seeds the training data; validation data uses seed + 1."""

    def __post_init__(self) -> None:
        from tbptt.data.tasks import TASKS
        from tbptt.data.text import LEVELS
        from tbptt.data.tokens import RAW_DTYPES

        check_types(self)

        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            got = "none" if not given else " and ".join(f"--{name}" for name in given)
            raise TBPTTError(
                f"a run needs exactly one data source, got {got}: give one of "
                "--text FILE, --csv FILE, --tokens FILE or --task NAME"
            )
        if self.task is not None:
            one_of("task", self.task, TASKS)
        if self.vocabulary is not None and self.tokens is None:
            raise TBPTTError("vocabulary is for a token file (--tokens); drop it")
        one_of("level", self.level, LEVELS)
        if self.dtype is not None:
            one_of("dtype", self.dtype, RAW_DTYPES)
        at_least(0, horizon=self.horizon)
        check_seed("seed", self.seed)
        at_least(1, season=self.season, ar_lags=self.ar_lags)
        one_of("base", self.base, ("linear_ar", "last", "none"))
        if self.csv is not None and self.horizon < 1:
            raise TBPTTError(f"horizon must be >= 1 for a CSV file, got {self.horizon}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise TBPTTError(f"test_fraction must lie in [0, 1), got {self.test_fraction}")
        if self.task is not None and (self.validation_file or self.test_file or self.test_fraction):
            raise TBPTTError(
                "a task generates its validation data: drop validation_file, test_file and "
                "test_fraction"
            )
        if self.test_fraction > 0 and self.test_file is not None:
            raise TBPTTError("give test_fraction or test_file, not both")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise TBPTTError(
                f"validation_fraction {self.validation_fraction} and test_fraction "
                f"{self.test_fraction} leave no training data; lower them"
            )
        at_least(1, min_count=self.min_count, length=self.length, batch_size=self.batch_size)
        at_least(1, num_sequences=self.num_sequences)
        for name in ("inputs", "targets", "exclude", "calendar"):
            if getattr(self, name) == []:
                raise TBPTTError(f"{name} names no column; name at least one, or leave it out")
        if not 0.0 < self.validation_fraction < 1.0:
            raise TBPTTError(
                f"validation_fraction must lie strictly between 0 and 1, "
                f"got {self.validation_fraction}"
            )

    def check_source_options(self) -> None:
        """Refuse an option for another data source than the run's, which it would
        ignore: CSV columns for a text file, a word level for a CSV, ..."""
        given = {
            "csv": [name for name in CSV_ONLY if getattr(self, name) is not None],
            "text": [name for name, default in TEXT_ONLY.items() if getattr(self, name) != default],
        }
        for source, names in given.items():
            if names and getattr(self, source) is None:
                options = " and ".join(f"--{name.replace('_', '-')}" for name in names)
                raise TBPTTError(
                    f"{options} {'is' if len(names) == 1 else 'are'} for a {source} file "
                    f"(--{source}), and this run reads none; drop "
                    f"{'it' if len(names) == 1 else 'them'}"
                )


@dataclass
class RunConfig:
    """A whole training run; saved as config.json in the run directory and in every
    checkpoint."""

    data: DataConfig
    """The data section."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model section."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The train section."""
    run_dir: str | None = None
    """Where the config, metrics, checkpoints and plots go (default: runs/ and the
    data's name)."""
    threads: int | None = None
    """CPU threads for torch (default: 1, the fastest for small models and on a busy
    machine; more pay only for a large model on an otherwise idle machine)."""

    def __post_init__(self) -> None:
        check_types(self)
        at_least(1, threads=self.threads)
        if self.run_dir is not None and not self.run_dir.strip():
            raise TBPTTError(
                f"run_dir {quoted(self.run_dir)} names no folder; give one, or leave it out "
                "for runs/ and the data's name"
            )


@dataclass
class EvalConfig:
    """How to evaluate a checkpoint."""

    batch_size: int | None = None
    """Parallel streams (default: the run's batch_size)."""
    seed: int | None = None
    """Task: generate the evaluation data from this seed (default: the run's seed + 1)."""
    device: str = "cpu"
    """cpu, cuda or cuda:N."""
    strict_vocabulary: bool = False
    """Refuse text with tokens the run's vocabulary lacks (default: read them as <unk>
    and say how many)."""
    threads: int | None = None
    """CPU threads for torch (default: 1, the fastest for small models and on a busy
    machine; more pay only for a large model on an otherwise idle machine)."""
    split: str = "validation"
    """Without FILE: the split to score, validation or test (a CSV run's with the state
    warmed on all the data before it; a language model's test file or fraction)."""
    warmup: int = 0
    """CSV, with FILE: steps the model reads before the first scored forecast (the
    state is warmed on them; origins need season and ar_lags steps of history too)."""

    def __post_init__(self) -> None:
        check_types(self)
        at_least(1, batch_size=self.batch_size, threads=self.threads)
        at_least(0, warmup=self.warmup)
        if self.seed is not None:
            check_seed("seed", self.seed)
        one_of("split", self.split, ("validation", "test"))
        check_device(self.device)


@dataclass
class PredictConfig:
    """Where to write a CSV run's forecasts, and of which data."""

    out: str | None = None
    """The predictions file: .csv (one row per forecast origin: its time or row, then
    COLUMN+1 .. COLUMN+H for each target, in the data's units) or .npy (an array of
    shape origins x horizon x targets)."""
    split: str = "test"
    """Without FILE: the split to forecast, validation or test (the state warmed on
    all the data before it)."""
    warmup: int = 0
    """With FILE: steps the model reads before the first forecast."""
    plot: str | None = None
    """Also draw truth against the forecasts at some leads into this PNG file."""
    leads: str | None = None
    """The leads to plot, comma-separated (default: 1 and the horizon)."""
    device: str = "cpu"
    """cpu, cuda or cuda:N."""
    threads: int | None = None
    """CPU threads for torch (default: 1, the fastest for small models and on a busy
    machine)."""

    def __post_init__(self) -> None:
        check_types(self)
        at_least(0, warmup=self.warmup)
        at_least(1, threads=self.threads)
        one_of("split", self.split, ("validation", "test"))
        check_device(self.device)
        if self.out is None or Path(self.out).suffix not in (".csv", ".npy"):
            raise TBPTTError(
                f"predict needs --out FILE ending in .csv or .npy, got {quoted(self.out)}"
            )
        if self.plot is not None and Path(self.plot).suffix != ".png":
            raise TBPTTError(
                f"--plot draws a PNG: give a file ending in .png, got {quoted(self.plot)}"
            )


@dataclass
class GenerateConfig:
    """How to sample text from a language model."""

    prompt: str = ""
    """Text the model reads first, its state carried into the sampling (default: start
    after a newline)."""
    length: int = 200
    """Tokens to sample."""
    temperature: float = 1.0
    """Divides the logits: below 1 safer, above 1 more varied; 0 always takes the
    likeliest token."""
    top_k: int | None = None
    """Sample among the k likeliest tokens only (default: all)."""
    seed: int = 0
    """Seeds the sampling: the same seed gives the same text."""
    device: str = "cpu"
    """cpu, cuda or cuda:N."""
    strict_vocabulary: bool = False
    """Refuse text with tokens the run's vocabulary lacks (default: read them as <unk>
    and say how many)."""
    threads: int | None = None
    """CPU threads for torch (default: 1, the fastest for small models and on a busy
    machine; more pay only for a large model on an otherwise idle machine)."""

    def __post_init__(self) -> None:
        check_types(self)
        at_least(0, length=self.length)
        at_least(1, top_k=self.top_k, threads=self.threads)
        check_seed("seed", self.seed)
        if not (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature < math.inf):
            raise TBPTTError(
                f"temperature must be finite and 0 (always the likeliest token) or at least "
                f"{MIN_TEMPERATURE:g}, got {self.temperature}: below that, logits / temperature "
                "overflow"
            )
        check_device(self.device)


MIN_TEMPERATURE = 1e-3
"""The lowest sampling temperature but 0: logits of 1e35 and more overflow below it."""

SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
"""The sections of a config file, by name."""
TOP_LEVEL = ("run_dir", "threads")
"""Keys of a config file outside the sections."""
RECORDED = ("splits",)
"""Keys a run's ``config.json`` records about its data (a CSV run's split boundaries):
derived from the data again on every read, so a config file may hold them and they
are ignored."""


def check_device(name: str) -> None:
    """Refuse a name that is not a device tbptt runs on."""
    from tbptt.devices import parse_device

    parse_device(name)


def at_least(minimum: int, **values: int | None) -> None:
    """Refuse any of ``values`` (None allowed) below ``minimum``."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise TBPTTError(f"{name} must be >= {minimum}, got {value}")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring of each field of dataclass ``cls``, whitespace collapsed.

    Read from the class's source with ``ast``: a string literal right after an
    annotated field is its docstring (empty if the source cannot be read).
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                    if isinstance(after.value.value, str):
                        docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def split_optional(hint: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(hint, False)``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like, for error messages."""
    base, optional = split_optional(hint)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    text = names.get(base, "a list of strings")
    return f"{text} or 'none'" if optional else text


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` (from a file or JSON) as type ``hint``, or an error naming ``where``.

    Integers are accepted for floats; ``None`` or the string ``'none'`` unsets an
    optional field.
    """
    base, optional = split_optional(hint)
    if optional and (value is None or (value == "none" and base is not str)):
        return None
    good = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(base, isinstance(value, list) and all(isinstance(item, str) for item in value))
    if not good:
        got = "nothing" if value is None else f"{quoted(value)} ({type(value).__name__})"
        raise TBPTTError(f"{where}: expected {describe(hint)}, got {got}; fix its value")
    return float(value) if base is float else value


def parse_option(text: str, hint: Any) -> Any:
    """A command-line option's text as type ``hint`` (ValueError if it is not one)."""
    base, optional = split_optional(hint)
    if optional and text.lower() == "none" and base is not str:
        return None
    if base is int:
        return int(text)
    if base is float:
        return float(text)
    return text


def check_section(section: str, values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` of ``[section]`` with every key known and every value of its type."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if key not in hints:
            home = [name for name, other in SECTIONS.items() if key in typing.get_type_hints(other)]
            hint = f"it belongs in [{home[0]}]" if home else nearest(key, list(hints))
            raise TBPTTError(f"{where}: [{section}] has no key {quoted(key)}; {hint}")
        checked[key] = convert(value, hints[key], f"{where}: [{section}] {key}")
    return checked


def check_document(document: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """A parsed config file checked: ``{section: {key: value}, "run": {...}}``."""
    checked: dict[str, dict[str, Any]] = {"run": {}}
    for key, value in document.items():
        if key in SECTIONS and isinstance(value, dict):
            checked[key] = check_section(key, value, where)
        elif key in SECTIONS:
            raise TBPTTError(f"{where}: {key} must be a section [{key}], got {quoted(value)}")
        elif key in RECORDED:
            continue
        elif key in TOP_LEVEL:
            key_type = typing.get_type_hints(RunConfig)[key]
            checked["run"][key] = convert(value, key_type, f"{where}: {key}")
        else:
            hint = nearest(key, [*SECTIONS, *TOP_LEVEL])
            raise TBPTTError(f"{where}: unknown key {quoted(key)} at the top level; {hint}")
    return checked


def read_config_file(path: str) -> dict[str, dict[str, Any]]:
    """The checked values of a TOML config file (or a run's ``config.json``)."""
    checked_path = check_file(path, "config file")
    try:
        text = checked_path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise decode_error(checked_path) from None
    try:
        if checked_path.suffix == ".json":
            document = json.loads(text)
        else:
            document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        problem = f"not valid {checked_path.suffix.lstrip('.').upper() or 'TOML'} ({error})"
        raise file_error(checked_path, problem, "fix the syntax there") from None
    except RecursionError:
        raise nesting_error(checked_path) from None
    if not isinstance(document, dict):
        raise file_error(checked_path, "is not a table of settings", "see tbptt train --help")
    return check_document(document, str(path))


FORECAST_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"hidden_size": 64, "num_layers": 1},
    "data": {"batch_size": 8},
    "train": {"k1": 32, "epochs": 100, "restore_best": True},
}
"""The defaults of a CSV forecasting run where they differ from the fields': a small
model trained for 100 epochs, evaluated on validation after each, ending with the
best epoch's weights (measured in docs/results.md, Forecasting: early stopping
with patience 10 stopped too soon)."""


def resolve(
    file_values: dict[str, dict[str, Any]], options: dict[str, dict[str, Any]]
) -> RunConfig:
    """The run's config: defaults (:data:`FORECAST_DEFAULTS` first for a CSV run), then
    ``file_values``, then ``options`` (both as :func:`check_document` returns them). A
    data source among the options replaces the file's."""
    merged = {}
    for section in (*SECTIONS, "run"):
        base = dict(file_values.get(section, {}))
        given = options.get(section, {})
        if section == "data" and any(name in given for name in SOURCES):
            base = {key: value for key, value in base.items() if key not in SOURCES}
        merged[section] = {**base, **given}
    if merged["data"].get("csv") is not None:
        for section, values in FORECAST_DEFAULTS.items():
            merged[section] = {**values, **merged[section]}
    return RunConfig(
        data=DataConfig(**merged["data"]),
        model=ModelConfig(**merged["model"]),
        train=TrainConfig(**merged["train"]),
        **merged["run"],
    )


def resolve_file(
    path: str | None, file_values: dict[str, dict[str, Any]], options: dict[str, dict[str, Any]]
) -> RunConfig:
    """A new run's config: :func:`resolve`, refusing options for another data source
    (:meth:`DataConfig.check_source_options`); an error that the values of the config
    file at ``path`` cause (one it would not raise without them) names the file."""

    def new_run(values: dict[str, dict[str, Any]]) -> RunConfig:
        config = resolve(values, options)
        config.data.check_source_options()
        return config

    try:
        return new_run(file_values)
    except TBPTTError as error:
        if path is None:
            raise
        try:
            new_run({})
        except TBPTTError as alone:
            if str(alone) == str(error):
                raise  # the options alone are to blame
        raise TBPTTError(f"{path}: {error}") from None


def from_dict(document: dict[str, Any], where: str) -> RunConfig:
    """A saved config (``config.json``, a checkpoint's) as a :class:`RunConfig`; an
    error names ``where``."""
    checked = check_document(document, where)
    try:
        return resolve(checked, {})
    except TBPTTError as error:
        raise TBPTTError(f"{where}: {error}") from None


def to_dict(config: RunConfig) -> dict[str, Any]:
    """``config`` as plain data, in the layout of a config file."""
    return asdict(config)


def data_name(data: DataConfig) -> str:
    """A short name for the data: the file's stem or the task's name."""
    source = next(getattr(data, name) for name in SOURCES if getattr(data, name) is not None)
    return str(source) if data.task is not None else Path(source).stem
