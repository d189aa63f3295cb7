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

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.data.streams import Batch, Streams
from tbptt.devices import device_of
from tbptt.diagnostics import choose_k2
from tbptt.engine import LossFn, unroll
from tbptt.engine.windows import RandomTruncation
from tbptt.errors import TBPTTError
from tbptt.files import remove_temporaries
from tbptt.training import checkpoints, distributed
from tbptt.training.averaging import IterateAverage
from tbptt.training.config import OPTIMIZERS, RANDOM_BATCH_WINDOWS, TrainConfig
from tbptt.training.precision import MixedPrecision
from tbptt.training.recovery import diverged, is_finite, scale_learning_rate
from tbptt.training.reporting import MetricsLog, StopSignals, peak_memory_mb
from tbptt.training.resumable import Resumable

__all__ = ["RANDOM_BATCH_WINDOWS", "TrainConfig", "Trainer"]

logger = logging.getLogger(__name__)

METRICS = ("language", "regression", "classification")

EVAL_SLICE_STEPS = 32
"""Steps per model call in evaluation: at most the outputs of a training window of
k1 >= 32 steps (which also keeps their gradient), whatever the batch's length."""


class Trainer(Resumable):
    """Trains ``model`` on ``train`` streams with TBPTT(k1, k2).

    Args:
        model: follows the tbptt model protocol.
        loss_fn: per-element losses ``(T, B)``.
        train: the training streams (batches of k1 steps fit windows best).
        config: see :class:`TrainConfig`.
        validation: streams evaluated every ``eval_every`` updates.
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
        train: Streams,
        config: TrainConfig,
        *,
        validation: Streams | None = None,
        metrics: str = "language",
        run_dir: str | Path | None = None,
        extra: dict[str, Any] | None = None,
        callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
        progress: Callable[[int, float], None] | None = None,
    ) -> None:
        if metrics not in METRICS:
            raise TBPTTError(f"metrics must be one of {', '.join(METRICS)}, got {metrics!r}")
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
        self.runner = config.runner(forward, loss_fn)
        self.optimizer = getattr(torch.optim, OPTIMIZERS[config.optimizer])(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = self._schedule()
        self.averaging = IterateAverage(config.nonmono) if config.optimizer == "ntasgd" else None
        self.run_dir = None if run_dir is None else Path(run_dir)
        main = distributed.is_main()
        self.log = MetricsLog(self.run_dir if main else None, callbacks if main else ())
        self.progress = progress if main else None
        if self.run_dir is not None and main:  # what a crash cut short (the targets are whole)
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_temporaries(folder)
        self.epoch, self.batch, self.window = 0, 0, 0
        self.best, self.stale_evals, self.skipped = math.inf, 0, 0
        self.rollbacks, self.skips_in_row = 0, 0
        self.first_loss: float | None = None
        """The first update's loss (of a window with unmasked steps, above zero), which
        ``config.blowup`` multiplies."""
        self._good: bytes | None = None
        """The last known-good checkpoint's bytes (or the start's): where a rollback
        returns. A checkpoint is known good once an update from it succeeded."""
        self._candidate: bytes | None = None
        """The latest checkpoint, until an update from it succeeds."""
        self._best: tuple[dict[str, Tensor], dict[str, float]] | None = None
        """A copy of the best evaluation's weights and its metrics (``restore_best``)."""
        self._loss_sum, self._loss_count = 0.0, 0
        self._started = self._last_record = time.perf_counter()
        self._evaluated_at = -1
        """The update after which the last evaluation ran (-1: none in this process)."""

    def _schedule(self) -> torch.optim.lr_scheduler.LRScheduler:
        """Constant (plateau lowers its base at evaluations), or cosine decay to zero
        over the expected updates, then zero."""
        total = max(self.config.max_windows or self.config.epochs * self._updates_per_epoch(), 1)
        if self.config.schedule == "cosine":
            return torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t / total, 1.0)))
            )
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)

    def _updates_per_epoch(self) -> int:
        """Windows per pass over the training streams (expected, for random k1)."""
        steps, k1 = self.train_streams.steps, self.runner.k1
        if k1 is None:
            per_batch = 1.0
        elif isinstance(k1, RandomTruncation):
            per_batch = steps / k1.expected_stride() + 0.5  # the last window is cut short
        else:
            per_batch = math.ceil(steps / k1)
        return round(len(self.train_streams) * per_batch)

    def fit(self) -> dict[str, float]:
        """Train until the epochs, ``max_windows`` or patience run out, or SIGINT/SIGTERM
        arrives (then the current batch finishes and a checkpoint is written). A new
        run first saves its start as ``checkpoints/latest.pt``, so a kill at any
        moment leaves a run that resumes.

        Returns the last evaluation's metrics (the last training loss without
        validation streams), with ``interrupted`` 1.0 if a signal stopped the run.
        With ``restore_best`` the model ends with the weights of the best evaluation,
        and those are the metrics returned.
        A run that keeps diverging after ``max_rollbacks`` rollbacks raises
        ``TBPTTError``, its model back at the last good checkpoint.
        """
        result: dict[str, float] = {}
        if self._good is None:  # the start of a fit is good if its parameters are finite
            if self._candidate is None:  # a new run's start is its first checkpoint on disk
                self.save("latest", to_disk=self.window == 0)
            self._good, self._candidate = self._candidate, None
        try:
            with StopSignals() as stop:
                while self.epoch < self.config.epochs and not self._done():
                    for batch in self.train_streams.batches(self.epoch, start=self.batch):
                        before = self.window
                        self.train_batch(batch)
                        self.batch += 1
                        if self.skips_in_row >= self.config.max_skips:
                            self._roll_back()
                            break  # continue from the restored position
                        result = self._after_batch(before) or result
                        stop.requested = distributed.any_rank(stop.requested)  # stop together
                        if stop.requested or self._done():
                            break
                    else:
                        self.epoch, self.batch = self.epoch + 1, 0
                        if self.config.eval_every == 0:
                            result = self._evaluate_and_keep_best() or result
                    if stop.requested:
                        break
                finished = self.epoch >= self.config.epochs or self._done()
                if finished and self._evaluated_at != self.window:
                    result = self._evaluate_and_keep_best() or result  # the final model's metrics
                self.save("latest")
                self.log.close()
                self.log.finish()  # a stop from here on does not cut the files short
        finally:
            self.log.close()  # also when the run fails: no writer thread left behind
        if self.config.restore_best:
            result = self._restore_best(result)
        return {**(result or self._last_train_record()), "interrupted": float(not finished)}

    def _restore_best(self, result: dict[str, float]) -> dict[str, float]:
        """Load the best evaluation's weights (kept in memory, or after a resume its
        ``best.pt``) and return its metrics (``result`` when they are not known)."""
        if self._best is not None:
            weights, result = self._best
            self.model.load_state_dict(weights)
        elif self.run_dir is not None and (self.run_dir / "checkpoints" / "best.pt").exists():
            state = checkpoints.load(self.run_dir / "checkpoints" / "best.pt", self.device)
            self.model.load_state_dict(state["model"])
        return result

    def _done(self) -> bool:
        out_of_windows = (
            self.config.max_windows is not None and self.window >= self.config.max_windows
        )
        out_of_patience = (
            self.config.patience is not None and self.stale_evals >= self.config.patience
        )
        return out_of_windows or out_of_patience

    def train_batch(self, batch: Batch) -> None:
        """One update per window of ``batch``; a non-finite loss or gradient skips its
        update, and a non-finite state leaving the window restarts the streams."""
        self.model.train()
        batch = batch.to(self.device)
        windows = self.runner.windows(
            batch.inputs, batch.targets, resets=batch.resets, mask=batch.mask
        )
        for window in self.precision.forward(windows):
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
                continue
            self.skips_in_row = 0
            if self.first_loss is None and int(count) and value > 0:  # not a masked window
                self.first_loss = value
            if self._candidate is not None:  # an update from it succeeded: it is good
                self._good, self._candidate = self._candidate, None
            self._step(window.lr_scale)
            if self.averaging is not None:
                self.averaging.update(self.model)
            self.scheduler.step()
            self.window += 1
            self._loss_sum += value * int(count)
            self._loss_count += int(count)
            if self.progress is not None:
                self.progress(self.window, value)

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
        blowup, first = self.config.blowup, self.first_loss
        return blowup is not None and first is not None and loss > blowup * first

    def _skip(self) -> None:
        """Count a skipped update; restart the streams if the state they carry is not
        finite (it would poison every later window, as NaN inputs do)."""
        self.skipped += 1
        self.skips_in_row += 1
        logger.warning(
            "skipped update %d: non-finite or blown-up loss or gradient", self.window + 1
        )
        if not is_finite(self.runner.state):
            self.runner.reset()
            logger.warning("restarted the streams: their state was not finite")

    def _roll_back(self) -> None:
        """Return to the last known-good checkpoint (or the start) with the learning
        rate times ``rollback_lr_factor``, keeping the counts of skips and rollbacks;
        after ``max_rollbacks`` rollbacks, return there, save it as the latest
        checkpoint and raise ``TBPTTError``."""
        skipped, rollbacks, failed_at = self.skipped, self.rollbacks + 1, self.window
        failed_lr, config, first_loss = (
            self.optimizer.param_groups[0]["lr"],
            self.config,
            self.first_loss,
        )
        if self._good is None:
            raise diverged(config.max_skips, failed_at, self.rollbacks, failed_lr, kept=None)
        self.load_state_dict(checkpoints.loads(self._good, self.device))
        self._candidate = None
        saved_rollbacks, self.skipped, self.skips_in_row = self.rollbacks, skipped, 0
        self.rollbacks, self.first_loss = min(rollbacks, config.max_rollbacks), first_loss
        self.log.truncate(self.window)
        if rollbacks > config.max_rollbacks:
            self.save("latest")  # the good one: what the error says is kept
            kept = (
                "the model"
                if self.run_dir is None
                else str(self.run_dir / "checkpoints" / "latest.pt")
            )
            raise diverged(
                config.max_skips,
                failed_at,
                config.max_rollbacks,
                failed_lr,
                kept=(kept, self.window),
            )
        ratio = config.rollback_lr_factor ** (rollbacks - saved_rollbacks)
        lr = scale_learning_rate(self.optimizer, self.scheduler, ratio)
        logger.warning("rolled back from update %d to %d, lr %.3g", failed_at, self.window, lr)
        self.log.record(
            {
                "kind": "rollback",
                "window": self.window,
                "epoch": self.epoch,
                "from_window": failed_at,
                "lr": lr,
                "skipped_updates": skipped,
                "rollbacks": rollbacks,
            }
        )

    def _clip(self) -> float:
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = math.inf if self.config.clip_norm is None else self.config.clip_norm
        return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))

    def _after_batch(self, before: int) -> dict[str, float] | None:
        """Log, evaluate and checkpoint when the batch's updates (from ``before`` on)
        reached a multiple of their interval; the evaluation's metrics if one ran."""
        config, result = self.config, None

        def due(every: int) -> bool:
            return every > 0 and self.window // every > before // every

        if due(config.log_every) and self._loss_count:
            self.log.record(self._train_record())
            self._loss_sum, self._loss_count = 0.0, 0
        if due(config.eval_every):
            result = self._evaluate_and_keep_best()
        if config.advise_every and due(config.advise_every):
            self._choose_k2()
        if due(config.checkpoint_every):
            self.save("latest")
        return result

    def _choose_k2(self) -> None:
        """Rechoose k2 on the first validation batch (the largest any rank chose)."""
        assert self.validation is not None and isinstance(self.runner.k1, int)
        sample = next(iter(self.validation.batches(0))).to(self.device)
        k2 = choose_k2(
            self.model,
            sample.inputs,
            sample.targets,
            self.loss_fn,
            self.runner.k1,
            tolerance=self.config.advise_tolerance,
            resets=sample.resets,
            mask=sample.mask,
        )
        self.runner.set_k2(max(distributed.gather(k2)))
        self.log.record({"kind": "advice", "window": self.window, "k2": self.runner.k2})

    def _train_record(self) -> dict[str, Any]:
        """The training loss and speed since the last record."""
        loss = self._loss_sum / max(self._loss_count, 1)
        now = time.perf_counter()
        tokens_per_second = self._loss_count / max(now - self._last_record, 1e-9)
        self._last_record = now
        return {
            "kind": "train",
            "window": self.window,
            "epoch": self.epoch,
            "loss": loss,
            **self._loss_metrics(loss),
            "lr": self.scheduler.get_last_lr()[0],
            "tokens_per_second": tokens_per_second,
            "skipped_updates": self.skipped,
            "rollbacks": self.rollbacks,
            "seconds": now - self._started,
            "peak_memory_mb": peak_memory_mb(self.device),
        }

    def _last_train_record(self) -> dict[str, Any]:
        """The training loss since the last record, or that record if none came since."""
        if self._loss_count == 0:
            logged = [record for record in self.log.records if record["kind"] == "train"]
            if logged:
                return logged[-1]
        return self._train_record()

    def _evaluate_and_keep_best(self) -> dict[str, float] | None:
        if self.validation is None:
            return None
        self._evaluated_at = self.window
        swap = nullcontext() if self.averaging is None else self.averaging.swapped_in(self.model)
        with swap:  # NT-ASGD evaluates, and keeps as the best, the average
            metrics = self.evaluate(self.validation)
            self.log.record({"kind": "eval", "window": self.window, "epoch": self.epoch, **metrics})
            if metrics["loss"] < self.best:
                self.best, self.stale_evals = metrics["loss"], 0
                self.save("best")
                if self.config.restore_best:
                    weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    self._best = (weights, metrics)
            else:
                self.stale_evals += 1
                if self.config.schedule == "plateau":
                    self._lower_on_plateau()
        if self.averaging is not None and self.averaging.observe(metrics["loss"]):
            logger.info(
                "validation loss worse than before the last %d: averaging", self.config.nonmono
            )
        return metrics

    def _lower_on_plateau(self) -> None:
        """Divide the learning rate by ``plateau_factor``, not below ``plateau_min_lr``;
        the optimizer and schedule hold it, so checkpoints keep it."""
        lr, floor = self.optimizer.param_groups[0]["lr"], self.config.plateau_min_lr
        ratio = max(1.0 / self.config.plateau_factor, min(floor / lr, 1.0))
        lowered = scale_learning_rate(self.optimizer, self.scheduler, ratio)
        logger.info("validation loss did not improve: learning rate %.3g -> %.3g", lr, lowered)

    @torch.no_grad()
    def evaluate(
        self, streams: Streams, progress: Callable[[int], None] | None = None
    ) -> dict[str, float]:
        """Metrics over ``streams`` with the state carried across batches and no
        truncation, so the loss does not depend on k (``semantics.md``); ``progress``
        is called with the batches done after each.

        Each batch runs in slices of ``EVAL_SLICE_STEPS`` steps, the state carried
        between them: the same metrics as one call per batch, with the outputs of
        only one slice alive at a time (a language model's ``(T, B, V)`` logits and
        the loss's copy of them are the bulk of evaluation's memory)."""
        self.model.eval()
        state, totals = None, {"loss": 0.0, "count": 0.0, "abs": 0.0, "correct": 0.0}
        for done, batch in enumerate(streams.batches(0), start=1):
            batch = batch.to(self.device)
            for piece in batch.slices(EVAL_SLICE_STEPS):
                outputs, state = unroll(self.model, piece.inputs, state, piece.resets)
                losses = self.loss_fn(outputs, piece.targets)
                add_totals(totals, outputs, piece, losses, self.metrics)
            if progress is not None:
                progress(done)
        totals = distributed.sum_values(totals)
        count = max(totals["count"], 1.0)
        loss = totals["loss"] / count
        metrics = {"loss": loss, **self._loss_metrics(loss)}
        if self.metrics == "regression":
            metrics["mae"] = totals["abs"] / count
        if self.metrics == "classification":
            metrics["accuracy"] = totals["correct"] / count
        return metrics

    def _loss_metrics(self, loss: float) -> dict[str, float]:
        if self.metrics == "language":
            return {"perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2)}
        return {"mse": loss} if self.metrics == "regression" else {}


def add_totals(
    totals: dict[str, float], outputs: Tensor, batch: Batch, losses: Tensor, metrics: str
) -> None:
    """Accumulate masked loss sums and counts, and what ``metrics`` reports besides:
    absolute errors (regression) or correct predictions (classification)."""
    mask = batch.mask
    totals["loss"] += float(torch.where(mask, losses, 0.0).sum())
    totals["count"] += float(mask.sum())
    if metrics == "regression" and outputs.shape == batch.targets.shape:
        errors = (outputs - batch.targets).abs()
        errors = errors.flatten(2).mean(-1) if errors.dim() > 2 else errors
        totals["abs"] += float(torch.where(mask, errors, 0.0).sum())
    elif metrics == "classification" and outputs.dim() == batch.targets.dim() + 1:
        totals["correct"] += float(((outputs.argmax(-1) == batch.targets) & mask).sum())
