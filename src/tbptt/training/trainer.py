"""Training with TBPTT: a thin ``fit`` around ``train_batch`` and ``evaluate``.

The trainer owns what a run needs beyond the engine: the optimizer and schedule,
gradient clipping, evaluation on a validation stream with the state carried (no
truncation, so its loss does not depend on k), early stopping, metrics files,
checkpoints that resume exactly, a clean stop on SIGINT/SIGTERM, and recovery from
divergence (:mod:`tbptt.training.recovery`).

A run directory holds ``metrics.jsonl`` and ``metrics.csv`` (one record per log or
evaluation), ``checkpoints/latest.pt`` and ``checkpoints/best.pt``, and
``learning_curves.png``.

The settings are :class:`tbptt.training.config.TrainConfig` (importable from here too),
and what a checkpoint holds and how a run resumes from it is
:class:`tbptt.training.resumable.Resumable`, the trainer's base.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.data.streams import Batch, Streams
from tbptt.devices import device_of
from tbptt.diagnostics import choose_k2
from tbptt.engine import LossFn, Runner, Window
from tbptt.engine.windows import RandomTruncation, Stride, as_stride
from tbptt.errors import TBPTTError
from tbptt.files import remove_temporaries
from tbptt.training import checkpoints, distributed
from tbptt.training.averaging import IterateAverage
from tbptt.training.config import OPTIMIZERS, RANDOM_BATCH_WINDOWS, TrainConfig
from tbptt.training.evaluation import check_metric, evaluate, loss_metrics
from tbptt.training.precision import MixedPrecision
from tbptt.training.progress import Progress
from tbptt.training.recovery import diverged, is_finite, scale_learning_rate
from tbptt.training.reporting import MetricsLog, StopSignals, peak_memory_mb
from tbptt.training.resumable import Resumable

__all__ = ["RANDOM_BATCH_WINDOWS", "TrainConfig", "Trainer"]

logger = logging.getLogger(__name__)


class Trainer(Resumable):
    """Trains ``model`` on ``train`` streams with TBPTT(k1, k2).

    Args:
        model: follows the tbptt model protocol.
        loss_fn: per-element losses ``(T, B)``.
        train: the training streams (batches of k1 steps fit windows best), or any
            iterable of :class:`~tbptt.data.Batch` es that can be iterated again
            each epoch (a list, a ``DataLoader``; see :data:`Data`).
        config: see :class:`TrainConfig`.
        validation: streams (or batches) evaluated every ``eval_every`` updates.
        optimizer: a ``torch.optim.Optimizer`` of the model's parameters (groups
            and all), or a name that replaces ``config.optimizer``; by default the
            config's, on ``config.lr`` and ``config.weight_decay``.
        scheduler: a learning-rate scheduler of that optimizer, stepped once per
            update (then ``config.schedule`` must stay ``"constant"``).
        metrics: ``"language"`` (loss in nats, perplexity, bits per token),
            ``"regression"`` (MSE, MAE) or ``"classification"`` (accuracy).
        run_dir: where metrics, checkpoints and plots go (none: nothing written).
        extra: plain data saved in every checkpoint (the resolved config, the
            vocabulary), for whoever loads it.
        callbacks: called with every record (a dict) as it is logged.
        progress: called after every update with the updates made so far and that
            window's mean loss (a progress bar's feed; rank 0 only).

    The latest checkpoint is also kept in host memory (as bytes), the point a
    rollback returns to, so recovery needs no disk and works without ``run_dir``.

    Under torchrun (see :mod:`tbptt.training.distributed`) every process builds the same
    trainer on its own share of the streams (:func:`tbptt.training.distributed.shard`); the
    updates are those of one process on the whole batch, metrics are over all ranks,
    and only rank 0 logs, calls ``callbacks`` and writes files.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train: Data,
        config: TrainConfig,
        *,
        validation: Data | None = None,
        optimizer: torch.optim.Optimizer | str | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        metrics: str = "language",
        run_dir: str | Path | None = None,
        extra: dict[str, Any] | None = None,
        callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
        progress: Callable[[int, float], None] | None = None,
    ) -> None:
        check_metric(metrics)
        if isinstance(optimizer, str):
            config = replace(config, optimizer=optimizer)  # checked as the config's own
        if scheduler is not None and config.schedule != "constant":
            raise TBPTTError(
                f"scheduler= replaces the schedule, and schedule is {config.schedule!r}: "
                "leave schedule constant, or pass no scheduler"
            )
        if config.advise_every is not None and validation is None:
            raise TBPTTError("advise_every chooses k2 on the validation streams: give some")
        if config.optimizer == "ntasgd" and validation is None:
            raise TBPTTError("ntasgd starts averaging on the validation loss: give validation")
        if config.schedule == "plateau" and validation is None:
            raise TBPTTError("the plateau schedule follows the validation loss: give validation")
        torch.manual_seed(config.seed + distributed.get_rank())  # each rank its own dropout
        self.device = distributed.device(str(device_of(config.device)))
        self.model, self.loss_fn, self.config = model.to(self.device), loss_fn, config
        distributed.broadcast_parameters(self.model)
        self.train_streams, self.validation, self.metrics = train, validation, metrics
        self.extra = extra or {}
        self.precision = MixedPrecision(config.precision, self.device)
        forward: Any = torch.compile(self.model) if config.compile else self.model
        recompute = config.recompute_segment or config.recompute_activations
        self.runner = Runner(forward, loss_fn, make_stride(config), config.k2, recompute=recompute)
        self.optimizer = self._optimizer(optimizer)
        self.scheduler = self._schedule() if scheduler is None else scheduler
        if self.scheduler.optimizer is not self.optimizer:
            raise TBPTTError("the scheduler steps another optimizer: build it on the trainer's")
        self.averaging = IterateAverage(config.nonmono) if config.optimizer == "ntasgd" else None
        self.run_dir = None if run_dir is None else Path(run_dir)
        main = distributed.is_main()
        self.log = MetricsLog(self.run_dir if main else None, callbacks if main else ())
        self.on_update = progress if main else None
        if self.run_dir is not None and main:  # what a crash cut short (the targets are whole)
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_temporaries(folder)
        self.progress = Progress()
        """Where the run is and what it has counted (saved whole in checkpoints)."""
        self._good: bytes | None = None
        """The last known-good checkpoint's bytes (or the start's): where a rollback
        returns. A checkpoint is known good once an update from it succeeded."""
        self._candidate: bytes | None = None
        """The latest checkpoint, until an update from it succeeds."""
        self._best: tuple[dict[str, Tensor], dict[str, float]] | None = None
        """A copy of the best evaluation's weights and its metrics (``restore_best``)."""
        self._pending: Iterator[bool] | None = None
        """The updates a stopped :meth:`fit` left, for the next (none after a resume)."""
        self._metrics: dict[str, float] = {}
        """The last evaluation's metrics (none yet: empty)."""
        self._started = self._last_record = time.perf_counter()
        self._evaluated_at = -1
        """The update after which the last evaluation ran (-1: none in this process)."""

    def _optimizer(self, given: torch.optim.Optimizer | str | None) -> torch.optim.Optimizer:
        """``given``, if an optimizer of the model's parameters, else the config's."""
        if not isinstance(given, torch.optim.Optimizer):
            return getattr(torch.optim, OPTIMIZERS[self.config.optimizer])(
                self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
            )
        owned = {id(parameter) for parameter in self.model.parameters()}
        if any(id(p) not in owned for group in given.param_groups for p in group["params"]):
            raise TBPTTError(
                "the optimizer updates tensors that are not the model's parameters: "
                "build it on model.parameters() (or groups of them)"
            )
        return given

    def _schedule(self) -> torch.optim.lr_scheduler.LRScheduler:
        """Constant (plateau lowers its base at evaluations), or cosine decay to zero
        over the expected updates, then zero."""
        if self.config.schedule != "cosine":
            return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)
        per_epoch = self.updates_per_epoch()
        if self.config.max_windows is None and per_epoch is None:
            raise TBPTTError(
                "the cosine schedule needs the run's length: set max_windows, or train "
                "on Streams (whose updates per epoch are known)"
            )
        total = max(self.config.max_windows or self.config.epochs * (per_epoch or 0), 1)
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t / total, 1.0)))
        )

    def updates_per_epoch(self) -> int | None:
        """Updates in one pass over the training streams (expected, for random k1;
        ``None`` for training data that is not :class:`~tbptt.data.Streams`)."""
        if not isinstance(self.train_streams, Streams):
            return None
        return updates_per_epoch(self.runner.stride, self.train_streams)

    def fit(self) -> dict[str, float]:
        """Train until the epochs, ``max_windows`` or patience run out, or SIGINT/SIGTERM
        arrives (then the current update finishes and a checkpoint is written). A new
        run first saves its start as ``checkpoints/latest.pt``, so a kill at any
        moment leaves a run that resumes.

        Returns the last evaluation's metrics (the last training loss without
        validation streams), with ``interrupted`` 1.0 if a signal stopped the run.
        With ``restore_best`` the model ends with the weights of the best evaluation,
        and those are the metrics returned.
        A run that keeps diverging after ``max_rollbacks`` rollbacks raises
        ``TBPTTError``, its model back at the last good checkpoint.
        """
        if self._good is None:  # the start of a fit is good if its parameters are finite
            if self._candidate is None:  # a new run's start is its first checkpoint on disk
                self.save("latest", to_disk=self.progress.updates == 0)
            self._good, self._candidate = self._candidate, None
        try:
            with StopSignals() as stop:
                updates = self._pending or self._updates()
                while (updated := next(updates, None)) is not None:
                    if self.progress.skips_in_row >= self.config.max_skips:
                        self._roll_back()
                        updates = self._updates()  # a restart, from the restored position
                        continue
                    if updated:
                        self._after_update()
                    stop.requested = distributed.any_rank(stop.requested)  # stop together
                    if stop.requested or self._done():
                        break
                finished = self.progress.epoch >= self.config.epochs or self._done()
                self._pending = None if finished else updates  # what a later fit continues
                if finished and self._evaluated_at != self.progress.updates:
                    self._evaluate_and_keep_best()  # the final model's metrics
                self.save("latest")
                self.log.close()
                self.log.finish()  # a stop from here on does not cut the files short
        finally:
            self.log.close()  # also when the run fails: no writer thread left behind
        result = self._restore_best() if self.config.restore_best else self._metrics
        return {**(result or self._last_train_record()), "interrupted": float(not finished)}

    def _updates(self) -> Iterator[bool]:
        """Every window from the current position to the end of the run, one update
        each: True for an update made, False for one skipped. An epoch's end evaluates
        with ``eval_every=0``; a checkpoint between any two windows resumes exactly
        (the runner's state holds a chunk cut short, :meth:`tbptt.Runner.state_dict`)."""
        progress = self.progress
        while progress.epoch < self.config.epochs and not self._done():
            for batch in epoch_batches(self.train_streams, progress.epoch, progress.batch):
                for window in self._windows(batch):
                    updated = self._update(window)
                    if not self.runner.mid_chunk:  # the batch is done: resume after it
                        progress.batch += 1
                    yield updated
                    self.model.train()  # after an evaluation, the next window trains
            progress.epoch, progress.batch = progress.epoch + 1, 0
            if self.config.eval_every == 0:
                self._evaluate_and_keep_best()

    def _restore_best(self) -> dict[str, float]:
        """Load the best evaluation's weights (kept in memory, or after a resume its
        ``best.pt``) and return its metrics (the last evaluation's when not known)."""
        result = self._metrics
        if self._best is not None:
            weights, result = self._best
            self.model.load_state_dict(weights)
        elif self.run_dir is not None and (self.run_dir / "checkpoints" / "best.pt").exists():
            state = checkpoints.load(self.run_dir / "checkpoints" / "best.pt", self.device)
            self.model.load_state_dict(state["model"])
        return result

    def _done(self) -> bool:
        config, progress = self.config, self.progress
        out_of_windows = config.max_windows is not None and progress.updates >= config.max_windows
        out_of_patience = config.patience is not None and progress.stale_evals >= config.patience
        return out_of_windows or out_of_patience

    def train_batch(self, batch: Batch) -> None:
        """One update per window of ``batch`` (see :meth:`_update`)."""
        for window in self._windows(batch):
            self._update(window)

    def _windows(self, batch: Batch) -> Iterator[Window]:
        """The windows of ``batch`` on the trainer's device, the model in training mode."""
        self.model.train()
        return self.precision.forward(self.runner.windows(batch.to(self.device)))

    def _update(self, window: Window) -> bool:
        """The update of ``window``; a non-finite (or blown-up) loss or gradient skips
        it (False), and a non-finite state leaving the window restarts the streams."""
        progress = self.progress
        self.optimizer.zero_grad(set_to_none=True)
        loss, mean, count = distributed.global_window(
            window.loss, window.count, window.reported_loss
        )
        self.precision.backward(loss)
        distributed.sum_gradients(self.model.parameters())
        self.precision.unscale(self.optimizer)
        norm, value = self._clip(), float(mean)  # a CPU-GPU sync
        if not (math.isfinite(norm) and math.isfinite(value)) or self._blown_up(value):
            self.precision.skip()
            self._skip()
            return False
        progress.skips_in_row = 0
        if progress.first_loss is None and int(count) and value > 0:  # not a masked window
            progress.first_loss = value
        if self._candidate is not None:  # an update from it succeeded: it is good
            self._good, self._candidate = self._candidate, None
        self._step(window.lr_scale)
        if self.averaging is not None:
            self.averaging.update(self.model)
        self.scheduler.step()
        progress.updates += 1
        progress.loss_sum += value * int(count)
        progress.loss_count += int(count)
        if self.on_update is not None:
            self.on_update(progress.updates, value)
        return True

    def _step(self, lr_scale: float) -> None:
        """An optimizer step with the learning rate scaled by ``lr_scale`` for it alone
        (randomised truncation), restored exactly for the schedule."""
        rates = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * lr_scale
        self.precision.step(self.optimizer)
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate

    def _blown_up(self, loss: float) -> bool:
        """Whether ``loss`` is above ``blowup`` times the first update's loss."""
        blowup, first = self.config.blowup, self.progress.first_loss
        return blowup is not None and first is not None and loss > blowup * first

    def _skip(self) -> None:
        """Count a skipped update; restart the streams if the state they carry is not
        finite (it would poison every later window, as NaN inputs do)."""
        self.progress.skipped += 1
        self.progress.skips_in_row += 1
        logger.warning(
            "skipped update %d: non-finite or blown-up loss or gradient",
            self.progress.updates + 1,
        )
        if not is_finite(self.runner.state):
            self.runner.reset()
            logger.warning("restarted the streams: their state was not finite")

    def _roll_back(self) -> None:
        """Return to the last known-good checkpoint (or the start) with the learning
        rate times ``rollback_lr_factor``, keeping the counts of skips and rollbacks;
        after ``max_rollbacks`` rollbacks, return there, save it as the latest
        checkpoint and raise ``TBPTTError``."""
        config, failed = self.config, self.progress
        failed_lr, rollbacks = self.optimizer.param_groups[0]["lr"], failed.rollbacks + 1
        if self._good is None:
            raise diverged(config.max_skips, failed.updates, failed.rollbacks, failed_lr, kept=None)
        self.load_state_dict(checkpoints.loads(self._good, self.device))
        self._candidate, restored = None, self.progress.rollbacks
        self.progress = replace(
            self.progress,
            skipped=failed.skipped,
            skips_in_row=0,
            rollbacks=min(rollbacks, config.max_rollbacks),
            first_loss=failed.first_loss,
        )
        self.log.truncate(self.progress.updates, self.progress.epoch)
        if rollbacks > config.max_rollbacks:
            self.save("latest")  # the good one: what the error says is kept
            folder = None if self.run_dir is None else self.run_dir / "checkpoints"
            kept = "the model" if folder is None else str(folder / "latest.pt")
            raise diverged(
                config.max_skips,
                failed.updates,
                config.max_rollbacks,
                failed_lr,
                kept=(kept, self.progress.updates),
            )
        ratio = config.rollback_lr_factor ** (rollbacks - restored)
        lr = scale_learning_rate(self.optimizer, self.scheduler, ratio)
        logger.warning(
            "rolled back from update %d to %d, lr %.3g", failed.updates, self.progress.updates, lr
        )
        self.log.record(
            {
                "kind": "rollback",
                "window": self.progress.updates,
                "epoch": self.progress.epoch,
                "from_window": failed.updates,
                "lr": lr,
                "skipped_updates": failed.skipped,
                "rollbacks": rollbacks,
            }
        )

    def _clip(self) -> float:
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = math.inf if self.config.clip_norm is None else self.config.clip_norm
        return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))

    def _after_update(self) -> None:
        """Log, evaluate, rechoose k2 and checkpoint at multiples of their intervals."""
        config, updates = self.config, self.progress.updates
        if updates % config.log_every == 0 and self.progress.loss_count:
            self.log.record(self._train_record())
            self.progress.loss_sum, self.progress.loss_count = 0.0, 0
        if config.eval_every and updates % config.eval_every == 0:
            self._evaluate_and_keep_best()
        if config.advise_every and updates % config.advise_every == 0:
            self._choose_k2()
        if updates % config.checkpoint_every == 0:
            self.save("latest")

    def _choose_k2(self) -> None:
        """Rechoose k2 on the first validation batch (the largest any rank chose)."""
        if self.validation is None or self.config.k1 is None:
            raise TBPTTError("advise_every needs validation streams and a fixed k1")
        sample = next(epoch_batches(self.validation, 0)).to(self.device)
        k2 = choose_k2(
            self.model,
            self.loss_fn,
            sample.inputs,
            sample.targets,
            self.config.k1,
            tolerance=self.config.advise_tolerance,
            resets=sample.resets,
            mask=sample.mask,
        )
        chosen = max(distributed.gather(k2))
        self.runner.set_k2(chosen)
        self.log.record({"kind": "advice", "window": self.progress.updates, "k2": chosen})

    def _train_record(self) -> dict[str, Any]:
        """The training loss and speed since the last record."""
        progress = self.progress
        loss = progress.loss_sum / max(progress.loss_count, 1)
        now = time.perf_counter()
        tokens_per_second = progress.loss_count / max(now - self._last_record, 1e-9)
        self._last_record = now
        return {
            "kind": "train",
            "window": progress.updates,
            "epoch": progress.epoch,
            "loss": loss,
            **loss_metrics(loss, self.metrics),
            "lr": self.scheduler.get_last_lr()[0],
            "tokens_per_second": tokens_per_second,
            "skipped_updates": progress.skipped,
            "rollbacks": progress.rollbacks,
            "seconds": now - self._started,
            "peak_memory_mb": peak_memory_mb(self.device),
        }

    def _last_train_record(self) -> dict[str, Any]:
        """The training loss since the last record, or that record if none came since."""
        if self.progress.loss_count == 0:
            logged = [record for record in self.log.records if record["kind"] == "train"]
            if logged:
                return logged[-1]
        return self._train_record()

    def _evaluate_and_keep_best(self) -> None:
        """Evaluate on the validation streams (if any), log it, and keep the best."""
        if self.validation is None:
            return
        progress, self._evaluated_at = self.progress, self.progress.updates
        swap = nullcontext() if self.averaging is None else self.averaging.swapped_in(self.model)
        with swap:  # NT-ASGD evaluates, and keeps as the best, the average
            metrics = self._metrics = self.evaluate(self.validation)
            where = {"window": progress.updates, "epoch": progress.epoch}
            self.log.record({"kind": "eval", **where, **metrics})
            if metrics["loss"] < progress.best:
                progress.best, progress.stale_evals = metrics["loss"], 0
                self.save("best")
                if self.config.restore_best:
                    weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    self._best = (weights, metrics)
            else:
                progress.stale_evals += 1
                if self.config.schedule == "plateau":
                    self._lower_on_plateau()
        if self.averaging is not None and self.averaging.observe(metrics["loss"]):
            logger.info(
                "validation loss worse than before the last %d: averaging", self.config.nonmono
            )

    def _lower_on_plateau(self) -> None:
        """Divide the learning rate by ``plateau_factor``, not below ``plateau_min_lr``;
        the optimizer and schedule hold it, so checkpoints keep it."""
        lr, floor = self.optimizer.param_groups[0]["lr"], self.config.plateau_min_lr
        ratio = max(1.0 / self.config.plateau_factor, min(floor / lr, 1.0))
        lowered = scale_learning_rate(self.optimizer, self.scheduler, ratio)
        logger.info("validation loss did not improve: learning rate %.3g -> %.3g", lr, lowered)

    def evaluate(
        self, streams: Data, progress: Callable[[int], None] | None = None
    ) -> dict[str, float]:
        """Metrics over ``streams`` with the state carried across batches and no
        truncation (:func:`tbptt.training.evaluation.evaluate`)."""
        return evaluate(
            self.model,
            self.loss_fn,
            epoch_batches(streams, 0),
            self.metrics,
            device=self.device,
            progress=progress,
        )


Data = Streams | Iterable[Batch]
"""Training or validation data: :class:`~tbptt.data.Streams`, or any iterable of
:class:`~tbptt.data.Batch` es that can be iterated again for each epoch (a list, a
``DataLoader``), consecutive chunks of the same streams."""


def epoch_batches(data: Data, epoch: int, start: int = 0) -> Iterator[Batch]:
    """The batches of ``epoch`` from the ``start``-th on."""
    if isinstance(data, Streams):
        return data.batches(epoch, start=start)
    return itertools.islice(iter(data), start, None)


def make_stride(config: TrainConfig) -> Stride:
    """The stride ``config`` asks for: its k1, or one drawn per window around it."""
    if config.k1_std is not None and config.k1 is not None:
        return RandomTruncation(config.k1, config.k1_std, seed=config.seed)
    return as_stride(config.k1)


def updates_per_epoch(stride: Stride, streams: Streams) -> int:
    """Updates in one pass over ``streams``: the windows ``stride`` expects in each
    batch (the last one shorter when the streams are not a whole number of batches)."""
    full, rest = divmod(streams.stream_length(0), streams.steps)
    return round(full * stride.windows(streams.steps) + (stride.windows(rest) if rest else 0))
