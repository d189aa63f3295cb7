"""What the ``tbptt`` subcommands do: build a run from its config, then train, resume,
evaluate or sample. The command line (:mod:`tbptt.cli`) parses and prints; this
module builds and runs, and raises ``TBPTTError`` for bad input.

Batches are k1 steps long, one window stride each. With k1 unset (full BPTT) a
batch is a whole stream: for a task, each batch holds whole sequences; for a file,
all of each of the batch_size streams, so an epoch is one update. Evaluation carries
the state and never truncates, so its batches are ``EVAL_STEPS`` long whatever k1.

Every checkpoint's ``extra`` holds what is needed to rebuild the model and read new
data as in training: ``config`` (the resolved :class:`RunConfig`), ``sizes`` (the
model's vocab/input/output sizes), ``vocabulary``, ``normalizer`` and ``columns``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tbptt import checkpoint, distributed, losses
from tbptt.config import (
    PATH_FIELDS,
    SOURCES,
    DataConfig,
    EvalConfig,
    GenerateConfig,
    ModelConfig,
    RunConfig,
    data_name,
    from_dict,
    to_dict,
)
from tbptt.data import Normalizer, Series, Streams, Vocabulary, open_tokens, read_csv, read_text
from tbptt.data.tasks import METRICS, TASKS, TaskData
from tbptt.data.text import split
from tbptt.data.tokens import read_runs
from tbptt.devices import device_of
from tbptt.engine import LossFn
from tbptt.errors import TBPTTError
from tbptt.files import atomic_write, file_error
from tbptt.models import RecurrentNetwork
from tbptt.trainer import TrainConfig, Trainer

if TYPE_CHECKING:
    from tbptt.cli import Output

EVAL_STEPS = 256
"""Steps per evaluation batch (the state is carried, so only memory depends on it)."""

RESUMABLE = ("epochs", "max_windows", "patience", "log_every", "eval_every", "checkpoint_every")
"""Training options a resumed run may change: they stop, log or save, and do not
change the updates the run makes (nor does ``device``)."""

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
        ids = vocabulary.encode(text)
        return language_data(config, ids, vocabulary.size, extras(vocabulary))
    if data.tokens is not None:
        token_ids, known, size = read_tokens(data, data.tokens, saved)
        return language_data(config, token_ids, size, extras(known))
    if data.csv is not None:
        return csv_data(config, saved)
    return task_data(config)


def language_data(config: RunConfig, ids: Any, vocab_size: int, extra: dict[str, Any]) -> RunData:
    """Next-token streams over ``ids: (N,)``, the end held out for validation."""
    train_ids, validation_ids = split(ids, config.data.validation_fraction)
    batch_size = config.data.batch_size
    steps = config.train.k1 or max((len(train_ids) - 1) // batch_size, 1)
    train = Streams.language_model(train_ids, batch_size, steps)
    validation = evaluation_streams(validation_ids[:-1], validation_ids[1:], batch_size)
    return RunData(train, validation, {"vocab_size": vocab_size}, extra)


def read_tokens(
    data: DataConfig, path: str, saved: Saved | None
) -> tuple[np.memmap, Vocabulary | None, int]:
    """A token file's ids, its vocabulary (if known) and the vocabulary size; every id
    is checked to lie in ``[0, size)`` (one pass, in constant memory)."""
    ids = open_tokens(path, None if path.endswith(".npy") else data.dtype)
    vocabulary = saved_vocabulary(saved)
    if vocabulary is None and saved is None and data.vocabulary is not None:
        vocabulary = Vocabulary.load(data.vocabulary)
    lowest, highest = 0, 0
    for start in range(0, len(ids), 1 << 22):
        chunk = read_runs(ids, np.array([start]), min(1 << 22, len(ids) - start))
        lowest, highest = min(lowest, int(chunk.min())), max(highest, int(chunk.max()))
    size = highest + 1
    if vocabulary is not None:
        size = vocabulary.size
    elif saved is not None:
        size = int(saved["sizes"]["vocab_size"])
    if lowest < 0 or highest >= size:
        bad = lowest if lowest < 0 else highest
        problem = f"holds id {bad}, outside the vocabulary's {size} ids"
        raise file_error(path, "", problem, "give the vocabulary (and dtype) it was written with")
    return ids, vocabulary, size


def forecast_pairs(
    series: Series, horizon: int, normalizer: Normalizer
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (normalised) at t and targets (in the data's units) at t + horizon."""
    inputs, targets = series.pairs(horizon)
    return normalizer.transform(inputs), targets


def csv_data(config: RunConfig, saved: Saved | None) -> RunData:
    """Forecasting streams from a CSV file; the normalizer is fitted on the training part."""
    data = config.data
    assert data.csv is not None
    series = read_csv(data.csv, inputs=data.inputs, targets=data.targets)
    train_part, validation_part = series.split(data.validation_fraction)
    normalizer = Normalizer.fit(train_part.inputs)
    if saved is not None and saved.get("normalizer") is not None:
        normalizer = Normalizer.from_state_dict(saved["normalizer"])
    inputs, targets = forecast_pairs(train_part, data.horizon, normalizer)
    steps = config.train.k1 or max(len(inputs) // data.batch_size, 1)
    train = Streams(inputs, targets, data.batch_size, steps)
    validation = evaluation_streams(
        *forecast_pairs(validation_part, data.horizon, normalizer), data.batch_size
    )
    sizes = {"input_size": inputs.shape[1], "output_size": targets.shape[1]}
    return RunData(train, validation, sizes, extras(normalizer=normalizer, series=series))


def make_task(data: DataConfig, seed: int) -> TaskData:
    """The task's data set drawn from ``seed``."""
    assert data.task is not None
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
    steps = config.train.k1 or train_set.mask.shape[0]
    train = task_streams(train_set, data.batch_size, steps, allow_short=False)
    validation = task_streams(validation_set, data.batch_size, EVAL_STEPS, allow_short=True)
    if train_set.inputs.is_floating_point():
        sizes = {
            "input_size": train_set.inputs.shape[-1],
            "output_size": train_set.targets.shape[-1],
        }
    else:
        assert train_set.input_size is not None and train_set.num_classes is not None
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


def build_model(config: ModelConfig, sizes: dict[str, int]) -> RecurrentNetwork:
    """The network of ``config`` for data of ``sizes``."""
    if config.tie_weights and sizes.get("output_size", sizes.get("vocab_size")) != sizes.get(
        "vocab_size"
    ):
        raise TBPTTError("tie_weights needs a language model (--text or --tokens); drop it")
    return RecurrentNetwork(
        config.cell,
        config.hidden_size,
        num_layers=config.num_layers,
        embedding_size=config.embedding_size,
        dropout=config.dropout,
        tie_weights=config.tie_weights,
        vocab_size=sizes.get("vocab_size"),
        input_size=sizes.get("input_size"),
        output_size=sizes.get("output_size"),
    )


def resolved(config: RunConfig) -> RunConfig:
    """``config`` with absolute file paths and the run directory filled in."""
    data = config.data
    paths: dict[str, Any] = {
        name: str(Path(getattr(data, name)).absolute())
        for name in PATH_FIELDS
        if getattr(data, name) is not None
    }
    run_dir = config.run_dir or str(Path("runs") / data_name(data))
    return replace(config, data=replace(data, **paths), run_dir=run_dir)


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to write into an existing run directory unless ``overwrite``, and never
    delete a folder that is not a run directory."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return
    if not run_dir.is_dir():
        raise file_error(run_dir, "", "is a file, not a run directory", "choose another --run-dir")
    if not overwrite:
        raise file_error(
            run_dir,
            "",
            "the run directory exists",
            f"pass --overwrite to replace it, --resume {run_dir} to continue it, "
            "or choose another --run-dir",
        )
    if not (run_dir / "config.json").exists():
        problem = "holds files but no config.json, so it is not a run to overwrite"
        raise file_error(run_dir, "", problem, "choose another --run-dir")


def write_config(run_dir: Path, config: RunConfig) -> None:
    """Save the resolved config as ``config.json`` (a valid ``--config`` file)."""
    with atomic_write(run_dir / "config.json") as file:
        file.write((json.dumps(to_dict(config), indent=2) + "\n").encode())


def make_trainer(
    config: RunConfig, run: RunData, model: RecurrentNetwork, output: Output
) -> Trainer:
    """The trainer of a run, its checkpoints carrying the config and the data's extras."""
    loss_fn, metrics = objective(config.data)
    validation = run.validation  # evaluated whole on every rank if it does not split
    if validation.batch_size % distributed.get_world_size() == 0:
        validation = distributed.shard(validation)
    return Trainer(
        model,
        loss_fn,
        distributed.shard(run.train),
        config.train,
        validation=validation,
        metrics=metrics,
        run_dir=config.run_dir,
        extra={"config": to_dict(config), "sizes": run.sizes, **run.extra},
        callbacks=[output.record],
    )


def train(config: RunConfig, *, overwrite: bool, output: Output) -> int:
    """``tbptt train``: a new run. Nothing is written until the data, the model and
    the device are checked, and an existing run directory only with ``overwrite``. A
    run that fails before its first checkpoint leaves nothing behind. Under torchrun
    every rank checks, rank 0 writes, and each rank trains its share of the streams."""
    config = resolved(config)
    assert config.run_dir is not None
    run_dir = Path(config.run_dir)
    with distributed.launched():
        check_run_dir(run_dir, overwrite)
        device_of(config.train.device)
        run = build_data(config)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, run.sizes)
        existed = run_dir.is_dir()
        distributed.barrier()  # every rank has checked the run directory before it changes
        if distributed.is_main():
            if overwrite and existed:
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_config(run_dir, config)
        distributed.barrier()
        try:
            return fit(make_trainer(config, run, model, output), config, run, output)
        except BaseException:
            if distributed.is_main() and not (run_dir / "checkpoints" / "latest.pt").exists():
                shutil.rmtree(run_dir, ignore_errors=True)
                if existed:
                    run_dir.mkdir()
            raise


def resume(run_dir: str, options: dict[str, dict[str, Any]], output: Output) -> int:
    """``tbptt train --resume RUN_DIR``: continue exactly from its latest checkpoint."""
    changed = [
        f"--{key.replace('_', '-')}"
        for section, values in options.items()
        for key in values
        if section != "train" or key not in (*RESUMABLE, "device")
    ]
    if changed:
        allowed = ", ".join(f"--{key.replace('_', '-')}" for key in (*RESUMABLE, "device"))
        raise TBPTTError(
            f"--resume continues a run with its saved config, so {', '.join(changed)} "
            f"cannot change (only {allowed} can); start a new run to change them"
        )
    if not Path(run_dir).is_dir():
        raise file_error(run_dir, "", "is not a run directory", "give the --run-dir of a run")
    with distributed.launched():
        return resume_from(run_dir, options, output)


def resume_from(run_dir: str, options: dict[str, dict[str, Any]], output: Output) -> int:
    """Continue the run in ``run_dir`` from its latest checkpoint (see :func:`resume`)."""
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    if not path.exists():
        problem = "holds no checkpoints/latest.pt to resume from"
        raise file_error(run_dir, "", problem, "give the --run-dir of a run that saved one")
    state, saved, config = open_checkpoint(path)
    config = replace(
        config, train=replace(config.train, **options.get("train", {})), run_dir=run_dir
    )
    check_unfinished(run_dir, state, config.train)
    run = build_data(config, saved)
    trainer = make_trainer(config, run, build_model(config.model, run.sizes), output)
    trainer.resume(path)
    distributed.barrier()  # every rank has read the config before rank 0 rewrites it
    if distributed.is_main():
        write_config(Path(run_dir), config)
    return fit(trainer, config, run, output)


def check_unfinished(run_dir: str, state: dict[str, Any], train_config: TrainConfig) -> None:
    """Refuse to resume a run its checkpoint says is complete (before writing anything)."""
    position = state.get("position")
    if not isinstance(position, dict):
        return  # a damaged checkpoint: resuming it says what is wrong
    epoch, window = position.get("epoch", 0), position.get("window", 0)
    limit = train_config.max_windows
    if epoch >= train_config.epochs or (limit is not None and window >= limit):
        raise TBPTTError(
            f"{run_dir}: the run is complete (epoch {epoch}, window {window}); "
            "raise --epochs or --max-windows to train it further"
        )


def windows_per_epoch(train_config: TrainConfig, streams: Streams) -> int:
    """Updates in one epoch over ``streams``."""
    length, steps = streams.stream_length(0), streams.steps
    if train_config.k1 is None:
        return len(streams)
    full, rest = divmod(length, steps)
    k1 = train_config.k1
    return full * -(-steps // k1) + -(-rest // k1)


def fit(trainer: Trainer, config: RunConfig, run: RunData, output: Output) -> int:
    """Train to the end, report the final metrics; 130 if a signal stopped the run."""
    if not distributed.is_main():
        output.mode = "quiet"  # rank 0 reports for all
    total = config.train.epochs * windows_per_epoch(config.train, run.train)
    if config.train.max_windows is not None:
        total = min(total, config.train.max_windows)
    output.start(total, trainer.window)
    try:
        result = trainer.fit()
    except OSError as error:  # a full disk, a folder gone or read-only
        raise write_error(error, Path(str(config.run_dir))) from error
    interrupted = result.pop("interrupted", 0.0)
    if run.task_validation is not None and config.data.task is not None:
        result.update(task_metric(trainer.model, config.data.task, run.task_validation))
    output.finish({"run_dir": config.run_dir, **result})
    if interrupted:
        output.note(f"stopped early; continue with: tbptt train --resume {config.run_dir}")
        return 130
    return 0


def write_error(error: OSError, run_dir: Path) -> TBPTTError:
    """The error for a run that could not write its files, and how to go on."""
    problem = f"writing the run failed ({error.strerror or error})"
    fix = "free some disk space (or fix the folder's permissions)"
    if (run_dir / "checkpoints" / "latest.pt").exists():
        fix += f", then continue from the last complete checkpoint: tbptt train --resume {run_dir}"
    else:
        fix += ", then start the run again"
    return file_error(run_dir, "", problem, fix)


def open_checkpoint(path: str | Path) -> tuple[dict[str, Any], Saved, RunConfig]:
    """A run's checkpoint, its ``extra`` and its config; a directory means its
    ``checkpoints/best.pt`` (or ``latest.pt``)."""
    path = Path(path)
    if path.is_dir():
        best, latest = path / "checkpoints" / "best.pt", path / "checkpoints" / "latest.pt"
        if not (best.exists() or latest.exists()):
            problem = "is a folder but not a run directory (no checkpoints/best.pt or latest.pt)"
            raise file_error(path, "", problem, "give a run directory or a checkpoint file")
        path = best if best.exists() else latest
    state = checkpoint.load(path)
    saved = state.get("extra")
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("config"), dict)
        and isinstance(saved.get("sizes"), dict)
        and isinstance(state.get("model"), dict)
    ):
        problem = "holds no run config (it was not written by tbptt train)"
        raise file_error(path, "", problem, "give a checkpoint from a run's checkpoints/")
    return state, saved, from_dict(saved["config"], f"{path}: its config")


def load_model(
    path: str, settings: EvalConfig | GenerateConfig
) -> tuple[RecurrentNetwork, Saved, RunConfig]:
    """The trained model of a checkpoint (on ``settings.device``), its extra and config."""
    device = device_of(settings.device)
    state, saved, config = open_checkpoint(path)
    model = build_model(config.model, saved["sizes"])
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        raise file_error(
            path, "", f"its weights do not fit its config ({str(error)[:80]})", "retrain it"
        ) from None
    return model.to(device).eval(), saved, config


def evaluation_data(
    config: RunConfig, saved: Saved, file: str | None, settings: EvalConfig
) -> tuple[Streams, TaskData | None]:
    """The streams to evaluate: ``file`` read as the run's data was, the run's
    validation part without one, or a task's data drawn from a seed."""
    data = config.data
    if data.task is not None:
        if file is not None:
            raise TBPTTError(
                "a task run is evaluated on generated data: drop FILE (--seed picks it)"
            )
        task = make_task(data, data.seed + 1 if settings.seed is None else settings.seed)
        return task_streams(task, data.batch_size, EVAL_STEPS, allow_short=True), task
    if file is None:
        return build_data(config, saved).validation, None
    if data.csv is not None:
        columns = saved.get("columns") or {}
        series = read_csv(file, inputs=columns.get("inputs"), targets=columns.get("targets"))
        normalizer = Normalizer.from_state_dict(saved["normalizer"])
        inputs, targets = forecast_pairs(series, data.horizon, normalizer)
        return evaluation_streams(inputs, targets, data.batch_size), None
    if data.tokens is not None:
        ids: Any = read_tokens(data, file, saved)[0]
    else:
        vocabulary = saved_vocabulary(saved)
        assert vocabulary is not None
        ids = vocabulary.encode(read_text(file))
    if len(ids) < 2:
        raise file_error(file, "", "holds fewer than 2 tokens", "give a longer file")
    return evaluation_streams(ids[:-1], ids[1:], data.batch_size), None


def evaluate(path: str, file: str | None, settings: EvalConfig) -> dict[str, float]:
    """``tbptt eval``: the metrics of a checkpoint's model on a file (or its run's
    validation data), with the state carried and no truncation."""
    model, saved, config = load_model(path, settings)
    if settings.batch_size is not None:
        config = replace(config, data=replace(config.data, batch_size=settings.batch_size))
    streams, task = evaluation_data(config, saved, file, settings)
    loss_fn, metrics = objective(config.data)
    train_config = replace(config.train, device=settings.device)
    result = Trainer(model, loss_fn, streams, train_config, metrics=metrics).evaluate(streams)
    if task is not None and config.data.task is not None:
        result.update(task_metric(model, config.data.task, task))
    return result


def generate(path: str, settings: GenerateConfig) -> str:
    """``tbptt generate``: the prompt and ``settings.length`` sampled tokens."""
    model, saved, config = load_model(path, settings)
    vocabulary = saved_vocabulary(saved)
    if vocabulary is None:
        kind = next(name for name in SOURCES if getattr(config.data, name) is not None)
        raise TBPTTError(
            f"{path}: generate needs a language model with a vocabulary, and this one was "
            f"trained on --{kind}; train on --text, or on --tokens with --vocabulary"
        )
    prompt_ids = vocabulary.encode(settings.prompt).tolist()
    start = prompt_ids or [vocabulary.index.get("\n", 1)]
    sampled = sample(model, start, settings)
    if vocabulary.level == "char":
        return settings.prompt + vocabulary.decode(sampled)
    return vocabulary.decode(prompt_ids + sampled)


@torch.no_grad()
def sample(model: RecurrentNetwork, start: list[int], settings: GenerateConfig) -> list[int]:
    """Read ``start``, then sample ``settings.length`` ids, the state carried throughout."""
    device = torch.device(settings.device)
    generator = torch.Generator().manual_seed(settings.seed)
    outputs, state = model(torch.tensor(start, device=device).view(-1, 1))
    sampled: list[int] = []
    for _ in range(settings.length):
        logits = outputs[-1, 0].float().cpu()
        logits[0] = -torch.inf  # never <unk>
        if settings.temperature == 0:
            token = int(logits.argmax())
        else:
            logits = logits / settings.temperature
            if settings.top_k is not None and settings.top_k < logits.numel():
                logits[logits < logits.topk(settings.top_k).values[-1]] = -torch.inf
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
        sampled.append(token)
        outputs, state = model(torch.tensor([[token]], device=device), state)
    return sampled
