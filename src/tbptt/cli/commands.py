"""What the ``tbptt`` subcommands do: build a run from its config, then train, resume,
evaluate or sample. The command line (:mod:`tbptt.cli`) parses and prints; this
module builds and runs, and raises ``TBPTTError`` for bad input.

The data of a run is built by :mod:`tbptt.cli.rundata`.

Every checkpoint's ``extra`` holds what is needed to rebuild the model and read new
data as in training: ``config`` (the resolved :class:`RunConfig`), ``sizes`` (the
model's vocab/input/output sizes), ``vocabulary``, ``normalizer`` and ``columns``.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tbptt.cli import forecast_output, forecasting
from tbptt.cli.budget import check_fits, run_needs
from tbptt.cli.output import format_record, plural, progress_bar
from tbptt.cli.runconfig import (
    AWD_DROPOUTS,
    AWD_PENALTIES,
    PATH_FIELDS,
    SOURCES,
    EvalConfig,
    GenerateConfig,
    ModelConfig,
    PredictConfig,
    RunConfig,
    data_name,
    from_dict,
    to_dict,
)
from tbptt.cli.rundata import (
    EVAL_STEPS,
    RunData,
    Saved,
    build_data,
    evaluation_streams,
    make_task,
    objective,
    read_tokens,
    saved_vocabulary,
    task_metric,
    task_streams,
)
from tbptt.cli.schema import check_recorded_files, check_saved
from tbptt.cli.threads import use_threads
from tbptt.data import Streams, read_text
from tbptt.data.tasks import TaskData
from tbptt.devices import device_of
from tbptt.errors import Stopped, TBPTTError, quoted
from tbptt.files import LOCK, TEMPORARY, FolderLock, atomic_write, file_error
from tbptt.models import RecurrentNetwork
from tbptt.training import checkpoints, distributed
from tbptt.training.evaluation import evaluate as evaluate_model
from tbptt.training.trainer import TrainConfig, Trainer, updates_per_epoch

if TYPE_CHECKING:
    from tbptt.cli.output import Output

RESUMABLE = ("epochs", "max_windows", "patience", "log_every", "eval_every", "checkpoint_every")
"""Training options a resumed run may change: they stop, log or save, and do not
change the updates the run makes (nor do ``device`` and ``threads``)."""
MEMORY_FIX = (
    "make it smaller (--hidden-size, --num-layers, --embedding-size; --num-sequences or "
    "--length of a task; --vocabulary for a token file whose ids are sparse) or use a "
    "machine with more memory"
)
"""What to do about a run that cannot fit in memory (:func:`tbptt.cli.budget.check_fits`)."""


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
        init=config.init,
        forget_bias=config.forget_bias,
        **{name: getattr(config, name) for name in (*AWD_DROPOUTS, *AWD_PENALTIES)},
        vocab_size=sizes.get("vocab_size"),
        input_size=sizes.get("input_size"),
        output_size=sizes.get("output_size"),
    )


def check_memory(
    config: RunConfig, sizes: dict[str, int] | None, training: bool, data: bool = True
) -> None:
    """Refuse a run whose data (unless not ``data``) and model of ``sizes`` (if known)
    cannot fit in memory."""
    build = None if sizes is None else lambda: build_model(config.model, sizes)
    needs = run_needs(config, training, build)
    if not data:
        needs.pop("data", None)
    check_fits(needs, MEMORY_FIX)


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
    delete a folder that is not a run directory. A folder that holds only what a
    start-up cut short left (a lock, temporary files) counts as empty."""
    if not run_dir.exists() or (run_dir.is_dir() and only_leftovers(run_dir)):
        return
    if not run_dir.is_dir():
        raise file_error(run_dir, "is a file, not a run directory", "choose another --run-dir")
    if not overwrite:
        raise file_error(
            run_dir,
            "the run directory exists",
            f"pass --overwrite to replace it, --resume {run_dir} to continue it, "
            "or choose another --run-dir",
        )
    if not (run_dir / "config.json").exists():
        problem = "holds files but no config.json, so it is not a run to overwrite"
        raise file_error(run_dir, problem, "choose another --run-dir")


def check_precision(train_config: TrainConfig) -> None:
    """Refuse a device this machine lacks, and fp16 on a CPU (oneDNN has no float16
    kernels for every cell; bfloat16 is the CPU's half precision)."""
    device = device_of(train_config.device)
    if train_config.precision == "fp16" and device.type == "cpu":
        raise TBPTTError(
            "precision fp16 needs a GPU (--device cuda); on a CPU use --precision bf16 or 32"
        )


def only_leftovers(folder: Path) -> bool:
    """Whether ``folder`` holds no file but a lock and temporary files, in any subfolder."""
    return all(
        path.is_dir() or path.name == LOCK or TEMPORARY.fullmatch(path.name)
        for path in folder.rglob("*")
    )


def take(lock: FolderLock, check: Callable[[], None] = lambda: None) -> None:
    """Take ``lock``: rank 0 takes it and runs ``check`` under it, the other ranks
    wait for the outcome, and all raise rank 0's error if it failed (then no rank
    holds it)."""
    error = None
    if distributed.is_main():
        try:
            lock.acquire()
            check()
        except TBPTTError as caught:
            lock.release()
            error = caught
    if distributed.any_rank(error is not None):
        raise error or TBPTTError(f"{lock.path.parent}: rank 0 could not lock the run directory")


@contextmanager
def held_back_stops() -> Iterator[list[signal.Signals]]:
    """Within the block, SIGINT and SIGTERM are only noted in the list it gives (in the
    main thread; elsewhere signals stay as they are)."""
    noted: list[signal.Signals] = []

    def note(number: int, frame: FrameType | None) -> None:
        noted.append(signal.Signals(number))

    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        with suppress(ValueError):
            previous[number] = signal.signal(number, note)
    try:
        yield noted
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def claimed(run_dir: Path, overwrite: bool) -> Iterator[None]:
    """A new run's directory, made, locked, checked again under the lock (a run may
    have finished into it meanwhile) and emptied (a replaced run, leftovers), for the
    block. SIGINT and SIGTERM are held back while it is claimed, so a stop comes where
    it is cleaned up: if the block fails with no checkpoint after update 0 (or is stopped
    with none at all), what it wrote goes, and a stop raises :class:`Stopped`."""
    existed, lock = run_dir.is_dir(), FolderLock(run_dir)
    with held_back_stops() as stops:
        if distributed.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
        take(lock, lambda: check_run_dir(run_dir, overwrite))
    latest = run_dir / "checkpoints" / "latest.pt"
    try:
        if stops:  # one came while the directory was claimed: it stops the run here
            raise KeyboardInterrupt(stops[0].name)
        if distributed.is_main():
            empty(run_dir)
        distributed.barrier()
        yield
    except BaseException as error:
        stopped = isinstance(error, KeyboardInterrupt)
        keep = latest.exists() if stopped else made_progress(run_dir)
        if distributed.is_main() and not keep:
            if existed:
                empty(run_dir)  # its lock goes on release
            else:
                shutil.rmtree(run_dir)
        if stopped:
            raise Stopped(run_dir, latest.exists()) from error
        raise
    finally:
        lock.release()


def made_progress(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` saved a checkpoint after some update (one at
    update 0, or a diverged run's return to its start, is no progress to keep)."""
    latest = run_dir / "checkpoints" / "latest.pt"
    try:
        return latest.exists() and checkpoints.load(latest)["position"]["window"] > 0
    except (TBPTTError, KeyError, TypeError):
        return False


def empty(folder: Path) -> None:
    """Delete what ``folder`` holds, except its lock."""
    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != LOCK:
            path.unlink()


def write_config(run_dir: Path, config: RunConfig, run: RunData | None = None) -> None:
    """Save the resolved config as ``config.json`` (a valid ``--config`` file), with a
    CSV run's split boundaries (``splits``, recorded for reference)."""
    document = to_dict(config)
    if run is not None and run.extra.get("forecast") is not None:
        document["splits"] = run.extra["forecast"]["splits"]
    with atomic_write(run_dir / "config.json") as file:
        file.write((json.dumps(document, indent=2) + "\n").encode())


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
        progress=output.window,
    )


def train(config: RunConfig, *, overwrite: bool, output: Output) -> int:
    """``tbptt train``: a new run. Nothing is written until the data, the model and
    the device are checked, and an existing run directory only with ``overwrite``.
    The run's start is saved as its first checkpoint before anything else, so a stop
    at any moment (SIGINT, SIGTERM: :class:`Stopped`; SIGKILL) leaves nothing or a run
    ``--resume`` continues; a run that fails with no checkpoint after update 0 leaves
    nothing behind. Under torchrun
    every rank checks, rank 0 writes, and each rank trains its share of the streams."""
    use_threads(config.threads)
    config = resolved(config)
    if config.run_dir is None:
        raise TBPTTError("tbptt train needs a run directory: give --run-dir")
    run_dir = Path(config.run_dir)
    try:
        return start(config, run_dir, overwrite, output)
    except Stopped:
        raise
    except KeyboardInterrupt as error:  # before anything was written
        raise Stopped(run_dir, False) from error


def start(config: RunConfig, run_dir: Path, overwrite: bool, output: Output) -> int:
    """Check, build, lock, save the start and train (see :func:`train`)."""
    with distributed.launched():
        check_run_dir(run_dir, overwrite)
        check_precision(config.train)
        check_memory(config, None, training=True)  # before the data is built
        run = build_data(config)
        check_memory(config, run.sizes, training=True)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, run.sizes)
        distributed.barrier()  # every rank has checked the run directory before it changes
        try:
            with claimed(run_dir, overwrite):
                trainer = make_trainer(config, run, model, output)
                trainer.save("latest")  # from here on a stop leaves a run --resume continues
                if distributed.is_main():
                    write_config(run_dir, config, run)
                return fit(trainer, config, run, output)
        except OSError as error:  # a full disk, a folder gone or read-only (cleaned up)
            raise write_error(error, run_dir) from error


def resume(run_dir: str, options: dict[str, dict[str, Any]], output: Output) -> int:
    """``tbptt train --resume RUN_DIR``: continue exactly from its latest checkpoint."""
    changed = [
        f"--{key.replace('_', '-')}"
        for section, values in options.items()
        for key in values
        if (section, key) != ("run", "threads")
        and (section != "train" or key not in (*RESUMABLE, "device"))
    ]
    if changed:
        allowed = ", ".join(
            f"--{key.replace('_', '-')}" for key in (*RESUMABLE, "device", "threads")
        )
        raise TBPTTError(
            f"--resume continues a run with its saved config, so {', '.join(changed)} "
            f"cannot change (only {allowed} can); start a new run to change them"
        )
    if not Path(run_dir).is_dir():
        raise file_error(run_dir, "is not a run directory", "give the --run-dir of a run")
    with distributed.launched():
        try:
            return resume_from(run_dir, options, output)
        except Stopped:
            raise
        except KeyboardInterrupt as error:  # its latest checkpoint is as it was
            raise Stopped(run_dir, True) from error


def resume_from(run_dir: str, options: dict[str, dict[str, Any]], output: Output) -> int:
    """Continue the run in ``run_dir`` from its latest checkpoint (see :func:`resume`)."""
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    if not path.exists():
        problem = "holds no checkpoints/latest.pt to resume from"
        raise file_error(run_dir, problem, "give the --run-dir of a run that saved one")
    state, saved, config = open_checkpoint(path)
    config = replace(
        config,
        train=replace(config.train, **options.get("train", {})),
        run_dir=run_dir,
        **options.get("run", {}),
    )
    use_threads(config.threads)
    check_precision(config.train)
    check_unfinished(run_dir, state, config.train)
    check_memory(config, saved["sizes"], training=True)
    run = build_data(config, saved)
    lock = FolderLock(run_dir)
    try:
        take(lock)
        trainer = make_trainer(config, run, build_model(config.model, run.sizes), output)
        trainer.resume(path)
        output.record(
            {
                "kind": "resume",
                "window": trainer.progress.updates,
                "epoch": trainer.progress.epoch,
                "from": str(path),
            }
        )
        distributed.barrier()  # every rank has read the config before rank 0 rewrites it
        if distributed.is_main():
            write_config(Path(run_dir), config, run)
        return fit(trainer, config, run, output)
    except OSError as error:  # a full disk, a folder gone or read-only
        raise write_error(error, Path(run_dir)) from error
    finally:
        lock.release()


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


def fit(trainer: Trainer, config: RunConfig, run: RunData, output: Output) -> int:
    """Train to the end, report the final metrics; 130 if a signal stopped the run."""
    if not distributed.is_main():
        output.mode = "quiet"  # rank 0 reports for all
    total = config.train.epochs * updates_per_epoch(trainer.runner.stride, run.train)
    if config.train.max_windows is not None:
        total = min(total, config.train.max_windows)
    if trainer.progress.updates == 0 and total < config.train.log_every:
        output.note(
            f"tbptt train: this run makes {plural(total, 'update')}, fewer than --log-every "
            f"{config.train.log_every}, so it prints no training line; raise --epochs or "
            "lower --log-every"
        )
    output.start(total, trainer.progress.updates)
    result = trainer.fit()
    interrupted = result.pop("interrupted", 0.0)
    with held_back_stops():  # the run is saved: only its report is left
        if run.task_validation is not None and config.data.task is not None:
            result.update(task_metric(trainer.model, config.data.task, run.task_validation))
        output.finish({"run_dir": config.run_dir, **result}, "stopped" if interrupted else "final")
        if config.data.csv is not None and distributed.is_main() and not interrupted:
            report_forecasts(trainer.model, config, run, output)
        if run.test is not None and distributed.is_main() and not interrupted:
            report_test(trainer, config, run.test, output)
    if interrupted:  # said even in quiet mode: the exit code alone does not say how to go on
        output.warn(
            f"stopped at update {trainer.progress.updates} of {total}, checkpoint saved; "
            f"continue with: tbptt train --resume {config.run_dir}"
        )
        return 130
    return 0


def report_forecasts(model: Any, config: RunConfig, run: RunData, output: Output) -> None:
    """A CSV run's model beside the baselines on its validation and test splits."""
    saved = {"forecast": run.extra["forecast"]}
    splits = ["validation"] + (["test"] if run.extra["forecast"]["splits"].get("test") else [])
    device = str(next(model.parameters()).device)
    for split in splits:
        report = forecasting.evaluate_run(model, config, saved, None, split, 0, device)
        output.report(report, forecast_output.format_report(report))


def report_test(trainer: Trainer, config: RunConfig, test: Streams, output: Output) -> None:
    """A language model's test data scored with the best checkpoint's weights, as
    ``tbptt eval RUN --split test`` scores it."""
    best = Path(str(config.run_dir)) / "checkpoints" / "best.pt"
    if best.exists():
        weights = checkpoints.load(best, map_location=trainer.device)["model"]
        trainer.model.load_state_dict(weights)
    record = {"kind": "test", **trainer.evaluate(test)}
    output.report(record, format_record(record))


def write_error(error: OSError, run_dir: Path) -> TBPTTError:
    """The error for a run that could not write its files, and how to go on."""
    where = f" writing {error.filename}" if error.filename else ""
    problem = f"writing the run failed ({error.strerror or error}{where})"
    fix = "free some disk space (or fix the folder's permissions)"
    if (run_dir / "checkpoints" / "latest.pt").exists():
        fix += f", then continue from the last complete checkpoint: tbptt train --resume {run_dir}"
    else:
        fix += ", then start the run again"
    return file_error(run_dir, problem, fix)


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint ``path`` names: a run directory's ``checkpoints/best.pt`` (or
    ``latest.pt``), or the file itself."""
    path = Path(path)
    if path.is_dir():
        best, latest = path / "checkpoints" / "best.pt", path / "checkpoints" / "latest.pt"
        if not (best.exists() or latest.exists()):
            problem = "is a folder but not a run directory (no checkpoints/best.pt or latest.pt)"
            raise file_error(path, problem, "give a run directory or a checkpoint file")
        path = best if best.exists() else latest
    return path


def open_checkpoint(path: str | Path) -> tuple[dict[str, Any], Saved, RunConfig]:
    """A run's checkpoint, its ``extra`` and its config; a directory means its
    ``checkpoints/best.pt`` (or ``latest.pt``)."""
    path = checkpoint_file(path)
    state = checkpoints.load(path)
    saved = state.get("extra")
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("config"), dict)
        and isinstance(state.get("model"), dict)
    ):
        problem = "holds no run config (it was not written by tbptt train)"
        raise file_error(path, problem, "give a checkpoint from a run's checkpoints/")
    check_saved(path, state)
    return state, saved, from_dict(saved["config"], f"{path}: its config")


def load_model(
    path: str, settings: EvalConfig | GenerateConfig | PredictConfig
) -> tuple[RecurrentNetwork, Saved, RunConfig]:
    """The trained model of a checkpoint (on ``settings.device``), its extra and config."""
    device = device_of(settings.device)
    state, saved, config = open_checkpoint(path)
    check_memory(config, saved["sizes"], training=False, data=False)  # the data, if read: later
    model = build_model(config.model, saved["sizes"])
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        raise file_error(
            path, f"its weights do not fit its config ({str(error)[:80]})", "retrain it"
        ) from None
    return model.to(device).eval(), saved, config


def count_unknown(ids: torch.Tensor, strict: bool, where: str) -> int:
    """How many of ``ids`` are ``<unk>`` (id 0): tokens the vocabulary lacks; with
    ``strict``, any is an error."""
    unknown = int((ids == 0).sum())
    if unknown and strict:
        raise TBPTTError(
            f"{where}: {unknown} of {len(ids)} tokens are not in the run's vocabulary; "
            "remove them, or drop --strict-vocabulary to read them as <unk>"
        )
    return unknown


def evaluation_data(
    config: RunConfig, saved: Saved, file: str | None, settings: EvalConfig
) -> tuple[Streams, TaskData | None, int | None]:
    """The streams to evaluate: ``file`` read as the run's data was, the run's
    validation part without one, or a task's data drawn from a seed; and how many
    tokens of a text ``file`` the vocabulary lacks (None for other data)."""
    data = config.data
    if file is None:
        check_memory(config, None, training=False)  # the run's own data, about to be read
    if data.task is not None:
        if file is not None:
            raise TBPTTError(
                "a task run is evaluated on generated data: drop FILE (--seed picks it)"
            )
        task = make_task(data, data.seed + 1 if settings.seed is None else settings.seed)
        return task_streams(task, data.batch_size, EVAL_STEPS, allow_short=True), task, None
    if file is None:
        run = build_data(config, saved)
        if settings.split == "validation":
            return run.validation, None, None
        if run.test is None:
            raise TBPTTError(
                "this run has no test data: it was trained without --test-file or "
                "--test-fraction; evaluate a file instead (tbptt eval RUN FILE)"
            )
        return run.test, None, None
    unknown = None
    if data.tokens is not None:
        ids: Any = read_tokens(data, file, saved)[0]
    else:
        vocabulary = saved_vocabulary(saved)
        if vocabulary is None:
            raise TBPTTError("this run has no vocabulary: evaluate it on its own data")
        ids = vocabulary.encode(read_text(file))
        unknown = count_unknown(ids, settings.strict_vocabulary, file)
    if len(ids) < 2:
        raise file_error(file, "holds fewer than 2 tokens", "give a longer file")
    return evaluation_streams(ids[:-1], ids[1:], data.batch_size), None, unknown


def evaluate(path: str, file: str | None, settings: EvalConfig) -> dict[str, Any]:
    """``tbptt eval``: the metrics of a checkpoint's model on a file (or its run's
    validation data), with the state carried and no truncation; for a text file, also
    ``unknown_tokens``, the tokens the run's vocabulary lacks (read as ``<unk>``); for a
    CSV run, the forecast report (:func:`tbptt.cli.forecasting.score`)."""
    use_threads(settings.threads)
    model, saved, config = load_model(path, settings)
    if file is None:
        check_recorded_files(checkpoint_file(path), config)
    if config.data.csv is not None:
        return forecasting.evaluate_run(
            model, config, saved, file, settings.split, settings.warmup, settings.device
        )
    if settings.batch_size is not None:
        config = replace(config, data=replace(config.data, batch_size=settings.batch_size))
    streams, task, unknown = evaluation_data(config, saved, file, settings)
    loss_fn, metrics = objective(config.data)
    with progress_bar(len(streams), "batch", desc="eval") as bar:
        result = evaluate_model(
            model,
            loss_fn,
            streams.batches(0),
            metrics,
            progress=lambda done: bar.update(done - bar.n),
        )
    if task is not None and config.data.task is not None:
        result.update(task_metric(model, config.data.task, task))
    if unknown is not None:
        result["unknown_tokens"] = unknown
    return result


def generate(path: str, settings: GenerateConfig) -> tuple[str, int]:
    """``tbptt generate``: the prompt and ``settings.length`` sampled tokens, and how
    many tokens of the prompt the vocabulary lacks (read as ``<unk>``)."""
    use_threads(settings.threads)
    model, saved, config = load_model(path, settings)
    vocabulary = saved_vocabulary(saved)
    if vocabulary is None:
        kind = next(name for name in SOURCES if getattr(config.data, name) is not None)
        raise TBPTTError(
            f"{path}: generate needs a language model with a vocabulary, and this one was "
            f"trained on --{kind}; train on --text, or on --tokens with --vocabulary"
        )
    encoded = vocabulary.encode(settings.prompt)
    unknown = count_unknown(encoded, settings.strict_vocabulary, "--prompt")
    prompt_ids = encoded.tolist()
    start = prompt_ids or [vocabulary.index.get("\n", 1)]
    sampled = sample(model, start, settings)
    if vocabulary.level == "char":
        return settings.prompt + vocabulary.decode(sampled), unknown
    return vocabulary.decode(prompt_ids + sampled), unknown


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


def load_run(path: str, device: str = "cpu") -> forecasting.ForecastRun:
    """A CSV run's model and transforms (see :func:`tbptt.load_run`)."""
    model, saved, config = load_model(path, EvalConfig(device=device))
    if config.data.csv is None or saved.get("forecast") is None:
        raise TBPTTError(f"{path}: load_run needs a forecasting run (tbptt train --csv)")
    transforms = forecasting.Transforms.from_state_dict(saved["forecast"]["transforms"])
    return forecasting.ForecastRun(model, transforms, config, device)


def predict(path: str, file: str | None, settings: PredictConfig) -> dict[str, Any]:
    """``tbptt predict``: a CSV run's forecasts of a split (or a new file) written to
    ``settings.out`` (and drawn into ``settings.plot``); returns what was written."""
    use_threads(settings.threads)
    model, saved, config = load_model(path, settings)
    if config.data.csv is None or saved.get("forecast") is None:
        raise TBPTTError(f"{path}: predict needs a forecasting run (tbptt train --csv)")
    transforms = forecasting.Transforms.from_state_dict(saved["forecast"]["transforms"])
    try:
        leads = [int(lead) for lead in (settings.leads or "").split(",") if lead.strip()]
    except ValueError:
        raise TBPTTError(f"--leads {quoted(settings.leads)}: give numbers like 1,24") from None
    leads = forecast_output.check_leads(leads, transforms.horizon)
    if file is None:
        check_recorded_files(checkpoint_file(path), config)
        series, origins, where = forecasting.scored_origins(
            config, transforms, file, settings.split, settings.warmup
        )
    else:  # every origin after the warm-up, the last one forecasting beyond the file
        series = forecasting.read_new_file(config.data, transforms, file)
        first = max(settings.warmup, transforms.first_origin)
        origins = np.arange(min(first, len(series) - 1), len(series))
        where = f"{file} from step {origins[0]}"
    forecasts = forecasting.forecast(model, transforms, series, origins, settings.device)
    header, rows = forecast_output.predictions_table(transforms, series, origins, forecasts)
    if settings.out is None:
        raise TBPTTError("tbptt predict needs --out FILE for the predictions")
    forecast_output.write_predictions(settings.out, header, rows, forecasts)
    if settings.plot is not None:
        forecast_output.plot_forecast(settings.plot, transforms, series, origins, forecasts, leads)
    return {"out": settings.out, "plot": settings.plot, "origins": len(origins), "data": where}
