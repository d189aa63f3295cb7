"""The data of a run, built from its config: training and validation streams for a
text, token or CSV file or a built-in task, with what checkpoints must keep to read
new data the same way (the vocabulary, the normalizer, the columns; a CSV run's
transforms and splits, :mod:`tbptt.cli.forecasting`).

Batches are k1 steps long, one window stride each (``RANDOM_BATCH_WINDOWS * k1``
with randomised truncation, see ``TrainConfig.k1_std``). With k1 unset (full BPTT) a
batch is a whole stream: for a task, each batch holds whole sequences; for a file,
all of each of the batch_size streams, so an epoch is one update. Evaluation carries
the state and never truncates, so its batches are ``EVAL_STEPS`` long whatever k1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tbptt import losses
from tbptt.cli import forecasting
from tbptt.cli.runconfig import DataConfig, RunConfig
from tbptt.data import Normalizer, Series, Streams, Vocabulary, open_tokens, read_text
from tbptt.data.tasks import METRICS, TASKS, TaskData
from tbptt.data.text import split
from tbptt.data.tokens import id_chunks
from tbptt.engine import LossFn
from tbptt.errors import TBPTTError
from tbptt.files import file_error

EVAL_STEPS = 256
"""Steps per evaluation batch (the state is carried, so only memory depends on it)."""

Saved = dict[str, Any]
"""A checkpoint's ``extra``."""


@dataclass
class RunData:
    """The data of a run and what the model and checkpoints need to know of it."""

    train: Streams
    validation: Streams
    sizes: dict[str, int]
    """``vocab_size``, ``input_size``, ``output_size``: as RecurrentNetwork takes them."""
    extra: dict[str, Any]
    """``vocabulary``, ``normalizer`` and ``columns``, as plain data (or None)."""
    task_validation: TaskData | None = None
    """A task's validation set, for its headline metric."""
    test: Streams | None = None
    """A language model's test data (``test_file`` or ``test_fraction``), scored at the
    end of training and by ``tbptt eval RUN --split test``."""


def multi_label_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy per output unit, averaged over units: ``(T, B, C) -> (T, B)``
    (embedded Reber's targets are the set of legal next symbols)."""
    return F.binary_cross_entropy_with_logits(outputs, targets, reduction="none").mean(-1)


def objective(data: DataConfig) -> tuple[LossFn, str]:
    """The loss and the trainer's metric kind for the data."""
    if data.csv is not None or data.task in ("adding", "mackey_glass"):
        return losses.mse, "regression"
    if data.task == "embedded_reber":  # no metric kind fits sets of targets: loss only
        return multi_label_loss, "language"
    if data.task is not None:
        return losses.cross_entropy, "classification"
    return losses.cross_entropy, "language"


def extras(
    vocabulary: Vocabulary | None = None,
    normalizer: Normalizer | None = None,
    series: Series | None = None,
) -> dict[str, Any]:
    """The data's part of a checkpoint's ``extra``, as plain data."""
    return {
        "vocabulary": None
        if vocabulary is None
        else {"level": vocabulary.level, "tokens": list(vocabulary.tokens)},
        "normalizer": None if normalizer is None else normalizer.state_dict(),
        "columns": None
        if series is None
        else {"inputs": list(series.input_names), "targets": list(series.target_names)},
    }


def saved_vocabulary(saved: Saved | None) -> Vocabulary | None:
    """The vocabulary a checkpoint holds, if any."""
    document = (saved or {}).get("vocabulary")
    return None if document is None else Vocabulary(tuple(document["tokens"]), document["level"])


def fit_batch(batch_size: int, steps: int) -> int:
    """``batch_size``, lowered so each stream of a short evaluation set has a step."""
    return max(1, min(batch_size, steps))


def evaluation_streams(inputs: Any, targets: Any, batch_size: int) -> Streams:
    """Evaluation streams over aligned pairs: short data allowed."""
    return Streams(
        inputs, targets, fit_batch(batch_size, len(inputs)), EVAL_STEPS, allow_short=True
    )


def build_data(config: RunConfig, saved: Saved | None = None) -> RunData:
    """Training and validation streams from the data config; ``saved`` (a checkpoint's
    extra) supplies the vocabulary and normalizer instead of building new ones."""
    data = config.data
    if data.text is not None:
        text = read_text(data.text)
        vocabulary = saved_vocabulary(saved) or Vocabulary.build(text, data.level, data.min_count)
        held_out: dict[str, Any] = {
            name: vocabulary.encode(read_text(path)) for name, path in held_out_files(data)
        }
        ids = vocabulary.encode(text)
        return language_data(config, ids, vocabulary.size, extras(vocabulary), held_out)
    if data.tokens is not None:
        token_ids, known, size = read_tokens(data, data.tokens, saved)
        sized = saved or {"sizes": {"vocab_size": size}}  # held-out ids must lie below it
        held_out = {name: read_tokens(data, path, sized)[0] for name, path in held_out_files(data)}
        return language_data(config, token_ids, size, extras(known), held_out)
    if data.csv is not None:
        return csv_data(config, saved)
    return task_data(config)


def held_out_files(data: DataConfig) -> list[tuple[str, str]]:
    """``(part, path)`` of the validation and test files given (text and tokens)."""
    files = (("validation", data.validation_file), ("test", data.test_file))
    return [(name, path) for name, path in files if path is not None]


def language_data(
    config: RunConfig,
    ids: Any,
    vocab_size: int,
    extra: dict[str, Any],
    held_out: dict[str, Any] | None = None,
) -> RunData:
    """Next-token streams over ``ids: (N,)``: validation (and test) from ``held_out``
    files' ids where given, else cut in time from the end (test last); the vocabulary
    is the caller's, from the training file."""
    data, held_out = config.data, held_out or {}
    if "test" not in held_out and data.test_fraction > 0:
        ids, held_out["test"] = split(ids, data.test_fraction)
    if "validation" not in held_out:
        fraction = data.validation_fraction / (1.0 - data.test_fraction)
        ids, held_out["validation"] = split(ids, fraction)
    batch_size = data.batch_size
    steps = config.train.batch_steps(max((len(ids) - 1) // batch_size, 1))
    train = Streams.language_model(ids, batch_size, steps)
    for name, part in held_out.items():
        if len(part) < 2:
            where = dict(held_out_files(data)).get(name, f"the {name} part")
            raise TBPTTError(f"{where}: holds fewer than 2 tokens; give a longer {name} set")
    streams = {
        name: evaluation_streams(part[:-1], part[1:], batch_size) for name, part in held_out.items()
    }
    sizes = {"vocab_size": vocab_size}
    return RunData(train, streams["validation"], sizes, extra, test=streams.get("test"))


def read_tokens(
    data: DataConfig, path: str, saved: Saved | None
) -> tuple[np.memmap, Vocabulary | None, int]:
    """A token file's ids, its vocabulary (if known) and the vocabulary size; every id
    is checked to lie in ``[0, size)`` (one pass, in constant memory)."""
    # a .npy file has its dtype: one given for a new run's file must match it (a
    # checkpoint's config may name the default of older versions, uint16)
    ids = open_tokens(path, None if path.endswith(".npy") and saved is not None else data.dtype)
    vocabulary = saved_vocabulary(saved)
    if vocabulary is None and saved is None and data.vocabulary is not None:
        vocabulary = Vocabulary.load(data.vocabulary)
    lowest, highest = 0, 0
    for _, chunk in id_chunks(ids):
        lowest, highest = min(lowest, int(chunk.min())), max(highest, int(chunk.max()))
    size = highest + 1
    if vocabulary is not None:
        size = vocabulary.size
    elif saved is not None:
        size = int(saved["sizes"]["vocab_size"])
    if lowest < 0 or highest >= size:
        bad = lowest if lowest < 0 else highest
        problem = f"holds id {bad}, outside the vocabulary's {size} ids"
        raise file_error(path, problem, "give the vocabulary (and dtype) it was written with")
    return ids, vocabulary, size


def csv_data(config: RunConfig, saved: Saved | None) -> RunData:
    """Forecasting streams from a CSV file (see :mod:`tbptt.cli.forecasting`): the
    training split's pairs, and its validation split scored with warm state."""
    train, validation, sizes, extra = forecasting.run_data(config, saved)
    return RunData(train, validation, sizes, {**extras(), **extra})


def make_task(data: DataConfig, seed: int) -> TaskData:
    """The task's data set drawn from ``seed``."""
    if data.task is None:
        raise TBPTTError("a task's data needs --task")
    make = TASKS[data.task]
    if data.task == "embedded_reber":
        return make(data.num_sequences, seed=seed)
    if data.task == "mackey_glass":
        return make(data.length, horizon=data.horizon, seed=seed)
    return make(data.num_sequences, data.length, seed=seed)


def task_streams(task: TaskData, batch_size: int, steps: int, allow_short: bool) -> Streams:
    """A task's N sequences as ``batch_size`` streams of whole sequences, end to end,
    each starting with a reset; one long series (mackey_glass) is cut into streams."""
    length, count = task.mask.shape
    if count == 1:
        inputs, targets = task.inputs[:, 0], task.targets[:, 0]
        return Streams(inputs, targets, batch_size, steps, allow_short=allow_short)
    if count % batch_size:
        raise TBPTTError(
            f"num_sequences {count} is not a multiple of batch_size {batch_size}, so a "
            "stream would hold part of a sequence; change one of them"
        )

    def flat(tensor: Tensor) -> Tensor:  # (T, N, ...) -> (N * T, ...), sequence after sequence
        return tensor.transpose(0, 1).reshape(count * length, *tensor.shape[2:])

    starts = torch.arange(count * length) % length == 0
    return Streams(
        flat(task.inputs),
        flat(task.targets),
        batch_size,
        steps,
        starts=starts,
        valid=flat(task.mask),
        allow_short=allow_short,
    )


def task_data(config: RunConfig) -> RunData:
    """A task's training set (from the seed) and validation set (seed + 1)."""
    data = config.data
    train_set, validation_set = make_task(data, data.seed), make_task(data, data.seed + 1)
    steps = config.train.batch_steps(train_set.mask.shape[0])
    train = task_streams(train_set, data.batch_size, steps, allow_short=False)
    validation = task_streams(validation_set, data.batch_size, EVAL_STEPS, allow_short=True)
    if train_set.inputs.is_floating_point():
        sizes = {
            "input_size": train_set.inputs.shape[-1],
            "output_size": train_set.targets.shape[-1],
        }
    else:
        if train_set.input_size is None or train_set.num_classes is None:
            raise TBPTTError(f"task {data.task!r} gave no input size or classes: report it")
        sizes = {"vocab_size": train_set.input_size, "output_size": train_set.num_classes}
    return RunData(train, validation, sizes, extras(), validation_set)


@torch.no_grad()
def task_metric(model: torch.nn.Module, task_name: str, task: TaskData) -> dict[str, float]:
    """The task's headline metric (see tbptt.data.tasks) of ``model`` on ``task``."""
    metric = METRICS[task_name]
    model.eval()
    device = next(model.parameters()).device
    outputs, _ = model(task.inputs.to(device))
    return {metric.__name__: metric(outputs.cpu(), task)}
