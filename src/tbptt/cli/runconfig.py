"""What a run is: typed configuration, read from TOML files and command-line options.

Each section is a dataclass whose fields carry a docstring (the string literal after
the field). Those docstrings are the single source of the command line's help text
(:func:`field_docs`), and the field types are the single source of how options and
file values are checked (:func:`convert`), so help, files and checks never drift
apart. A config file has the sections ``[model]``, ``[data]`` and ``[train]`` and the
top-level key ``run_dir``; a run's resolved ``config.json`` is a valid config file too.

Precedence: the fields' defaults, then the file, then command-line options.
"""

from __future__ import annotations

import ast
import difflib
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

from tbptt.data.tasks import TASKS
from tbptt.data.text import LEVELS
from tbptt.data.tokens import RAW_DTYPES
from tbptt.devices import parse_device
from tbptt.errors import TBPTTError
from tbptt.files import check_file, decode_error, file_error
from tbptt.models.recurrent import CELLS
from tbptt.training.config import TrainConfig, check_seed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SOURCES = ("text", "csv", "tokens", "task")
"""The data source fields of :class:`DataConfig`; a run has exactly one."""

PATH_FIELDS = ("text", "csv", "tokens", "vocabulary")
"""Fields that name files: made absolute in a resolved config."""


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

    def __post_init__(self) -> None:
        one_of("cell", self.cell, CELLS)
        at_least(1, hidden_size=self.hidden_size, num_layers=self.num_layers)
        at_least(1, embedding_size=self.embedding_size)
        if not 0.0 <= self.dropout < 1.0:
            raise TBPTTError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    """The data: one source, laid out as batch_size parallel streams."""

    text: str | None = None
    """A UTF-8 text file to model, next token from the ones before (a language model)."""
    csv: str | None = None
    """A CSV file with a header row: forecast the target columns from the input columns."""
    tokens: str | None = None
    """A token file (raw ids or a 1-D .npy array, see tbptt.data.write_tokens) to model."""
    task: str | None = None
    """A built-in long-dependency task: adding, copy, recall, temporal_order,
    embedded_reber or mackey_glass."""
    level: str = "char"
    """Text: tokens are characters (char), or words and newlines (word)."""
    min_count: int = 1
    """Text: tokens seen fewer times than this become <unk>."""
    vocabulary: str | None = None
    """Token file: its vocabulary (JSON from Vocabulary.save), to size the model and
    decode generated text (default: ids up to the largest in the file)."""
    dtype: str = "uint16"
    """Token file: the id type of a raw file (uint16, uint32, int32 or int64)."""
    inputs: list[str] | None = None
    """CSV: the input column names (default: every column)."""
    targets: list[str] | None = None
    """CSV: the target column names (default: the input columns)."""
    horizon: int = 1
    """CSV and mackey_glass: predict the targets this many steps ahead."""
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
    """Parallel streams per batch (B)."""
    seed: int = 0
    """Task: seeds the training data; validation data uses seed + 1."""

    def __post_init__(self) -> None:
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
        one_of("dtype", self.dtype, RAW_DTYPES)
        at_least(0, horizon=self.horizon)
        check_seed("seed", self.seed)
        at_least(1, min_count=self.min_count, length=self.length, batch_size=self.batch_size)
        at_least(1, num_sequences=self.num_sequences)
        for name in ("inputs", "targets"):
            if getattr(self, name) == []:
                raise TBPTTError(f"{name} names no column; name at least one, or leave it out")
        if not 0.0 < self.validation_fraction < 1.0:
            raise TBPTTError(
                f"validation_fraction must lie strictly between 0 and 1, "
                f"got {self.validation_fraction}"
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


@dataclass
class EvalConfig:
    """How to evaluate a checkpoint."""

    batch_size: int | None = None
    """Parallel streams (default: the run's batch_size)."""
    seed: int | None = None
    """Task: generate the evaluation data from this seed (default: the run's seed + 1)."""
    device: str = "cpu"
    """cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        at_least(1, batch_size=self.batch_size)
        if self.seed is not None:
            check_seed("seed", self.seed)
        parse_device(self.device)


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

    def __post_init__(self) -> None:
        at_least(0, length=self.length)
        at_least(1, top_k=self.top_k)
        check_seed("seed", self.seed)
        if not (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature < math.inf):
            raise TBPTTError(
                f"temperature must be finite and 0 (always the likeliest token) or at least "
                f"{MIN_TEMPERATURE:g}, got {self.temperature}: below that, logits / temperature "
                "overflow"
            )
        parse_device(self.device)


MIN_TEMPERATURE = 1e-3
"""The lowest sampling temperature but 0: logits of 1e35 and more overflow below it."""

SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
"""The sections of a config file, by name."""
TOP_LEVEL = ("run_dir",)
"""Keys of a config file outside the sections."""


def one_of(name: str, value: str, choices: typing.Iterable[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices``, suggesting the nearest."""
    choices = list(choices)
    if value not in choices:
        raise TBPTTError(f"{name} {value!r} is unknown; {nearest(value, choices)}")


def at_least(minimum: int, **values: int | None) -> None:
    """Refuse any of ``values`` (None allowed) below ``minimum``."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise TBPTTError(f"{name} must be >= {minimum}, got {value}")


def nearest(key: str, choices: typing.Sequence[str]) -> str:
    """'did you mean X?' for the closest of ``choices``, else the list of them."""
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"choose one of {', '.join(choices)}"


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
        got = "nothing" if value is None else f"{value!r} ({type(value).__name__})"
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
            raise TBPTTError(f"{where}: [{section}] has no key {key!r}; {hint}")
        checked[key] = convert(value, hints[key], f"{where}: [{section}] {key}")
    return checked


def check_document(document: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """A parsed config file checked: ``{section: {key: value}, "run": {...}}``."""
    checked: dict[str, dict[str, Any]] = {"run": {}}
    for key, value in document.items():
        if key in SECTIONS and isinstance(value, dict):
            checked[key] = check_section(key, value, where)
        elif key in SECTIONS:
            raise TBPTTError(f"{where}: {key} must be a section [{key}], got {value!r}")
        elif key in TOP_LEVEL:
            checked["run"][key] = convert(value, str | None, f"{where}: {key}")
        else:
            hint = nearest(key, [*SECTIONS, *TOP_LEVEL])
            raise TBPTTError(f"{where}: unknown key {key!r} at the top level; {hint}")
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
        raise file_error(checked_path, "", problem, "fix the syntax there") from None
    if not isinstance(document, dict):
        raise file_error(checked_path, "", "is not a table of settings", "see tbptt train --help")
    return check_document(document, str(path))


def resolve(
    file_values: dict[str, dict[str, Any]], options: dict[str, dict[str, Any]]
) -> RunConfig:
    """The run's config: defaults, then ``file_values``, then ``options`` (both as
    :func:`check_document` returns them). A data source among the options replaces
    the file's."""
    merged = {}
    for section in (*SECTIONS, "run"):
        base = dict(file_values.get(section, {}))
        given = options.get(section, {})
        if section == "data" and any(name in given for name in SOURCES):
            base = {key: value for key, value in base.items() if key not in SOURCES}
        merged[section] = {**base, **given}
    return RunConfig(
        data=DataConfig(**merged["data"]),
        model=ModelConfig(**merged["model"]),
        train=TrainConfig(**merged["train"]),
        **merged["run"],
    )


def from_dict(document: dict[str, Any], where: str) -> RunConfig:
    """A saved config (``config.json``, a checkpoint's) as a :class:`RunConfig`."""
    return resolve(check_document(document, where), {})


def to_dict(config: RunConfig) -> dict[str, Any]:
    """``config`` as plain data, in the layout of a config file."""
    return asdict(config)


def data_name(data: DataConfig) -> str:
    """A short name for the data: the file's stem or the task's name."""
    source = next(getattr(data, name) for name in SOURCES if getattr(data, name) is not None)
    return str(source) if data.task is not None else Path(source).stem
