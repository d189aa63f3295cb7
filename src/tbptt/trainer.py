"""Training with TBPTT: a thin ``fit`` around ``train_batch`` and ``evaluate``.

The trainer owns what a run needs beyond the engine: the optimizer and schedule,
gradient clipping, evaluation on a validation stream with the state carried (no
truncation, so its loss does not depend on k), early stopping, metrics files,
checkpoints that resume exactly, a clean stop on SIGINT/SIGTERM, and recovery from
divergence (:mod:`tbptt.recovery`).

A run directory holds ``metrics.jsonl`` and ``metrics.csv`` (one record per log or
evaluation), ``checkpoints/latest.pt`` and ``checkpoints/best.pt``, and
``learning_curves.png``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tbptt import checkpoint, distributed
from tbptt.data.streams import Batch, Streams
from tbptt.devices import device_of, parse_device
from tbptt.diagnostics import choose_k2
from tbptt.engine import LossFn, Runner, unroll
from tbptt.errors import TBPTTError
from tbptt.files import file_error, remove_temporaries
from tbptt.precision import PRECISIONS, MixedPrecision
from tbptt.recovery import diverged, is_finite, scale_learning_rate
from tbptt.reporting import MetricsLog, StopSignals, peak_memory_mb
from tbptt.windows import RandomTruncation, Stride, check_truncation

logger = logging.getLogger(__name__)

METRICS = ("language", "regression", "classification")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULES = ("constant", "cosine")
RANDOM_BATCH_WINDOWS = 8
"""Windows of mean length per training batch under randomised truncation."""


@dataclass
class TrainConfig:
    """How to train. Every field can be set from the command line or a TOML file."""

    k1: int | None = 64
    """Steps between parameter updates (the window stride); unset: full BPTT per batch."""
    k2: int | None = None
    """Steps a gradient flows back, k1 <= k2 (default k1: non-overlapping windows)."""
    k1_std: float | None = None
    """Randomised truncation (AWD-LSTM): draw each window's k1 from N(k1, k1_std)
    (from N(k1 / 2, k1_std) one time in 20), keep k2 - k1 steps of overlap, and scale
    that update's learning rate by the drawn k1 over k1 (unset: a fixed k1). The
    training data then comes in batches of ``RANDOM_BATCH_WINDOWS * k1`` steps, so
    the draws follow each other along the streams and only a batch's last window
    is cut short."""
    checkpoint_activations: bool = False
    """Keep only the state every ~sqrt(window) steps and recompute the rest in the
    backward pass: the same gradients in far less memory, one more forward pass
    (docs/memory.md)."""
    checkpoint_segment: int | None = None
    """With checkpoint_activations: steps between kept states (default: about the
    square root of the window's steps)."""
    advise_every: int | None = None
    """Updates between rechoosing k2 from the gradient's truncation bias on the first
    validation batch (tbptt.diagnostics.choose_k2: the smallest of k1, 2 k1, 4 k1, ...
    within advise_tolerance of full BPTT); k1 stays. Unset: k2 stays fixed."""
    advise_tolerance: float = 0.95
    """With advise_every: the cosine to the full gradient that k2 must reach."""
    epochs: int = 1
    """Passes over the training streams."""
    max_windows: int | None = None
    """Stop after the batch in which this many parameter updates are reached
    (default: run all epochs)."""
    optimizer: str = "adam"
    """adam, adamw or sgd."""
    lr: float = 2e-3
    """Learning rate."""
    weight_decay: float = 0.0
    """Weight decay of the optimizer."""
    clip_norm: float | None = 1.0
    """Clip the gradient's global norm to this (unset: no clipping)."""
    max_skips: int = 5
    """Updates skipped in a row (non-finite loss or gradient) after which the run rolls
    back to its last checkpoint and lowers the learning rate."""
    rollback_lr_factor: float = 0.5
    """Multiplies the learning rate at each rollback (between 0 and 1)."""
    max_rollbacks: int = 3
    """Rollbacks after which a run that still diverges stops with an error."""
    schedule: str = "constant"
    """Learning-rate schedule: constant, or cosine decay to zero over the run."""
    eval_every: int = 0
    """Updates between evaluations on the validation streams (0: after each epoch)."""
    patience: int | None = None
    """Stop after this many evaluations without a better validation loss."""
    log_every: int = 50
    """Updates between training log records."""
    checkpoint_every: int = 200
    """Updates between checkpoints (one is also written at the end and on a stop)."""
    seed: int = 0
    """Seeds dropout and every other random draw of training."""
    device: str = "cpu"
    """cpu, cuda or cuda:N (under torchrun, cuda is each process's own GPU)."""
    precision: str = "32"
    """32 (float32), bf16 (autocast to bfloat16) or fp16 (autocast to float16 with a
    grad scaler); parameters and optimizer state stay float32."""
    compile: bool = False
    """Run the training forward passes through torch.compile (the first windows
    compile, which takes a while)."""

    def __post_init__(self) -> None:
        check_truncation(self.k1, self.k2)
        segment = self.checkpoint_segment
        if segment is not None and (segment < 1 or not self.checkpoint_activations):
            raise TBPTTError(
                f"checkpoint_segment={segment} needs checkpoint_activations on and >= 1 steps"
            )
        if self.k1_std is not None and (self.k1 is None or not self.k1_std >= 0):
            raise TBPTTError(f"k1_std needs a k1 and must be >= 0, got {self.k1_std}")
        if self.advise_every is not None and (self.k1 is None or self.k1_std is not None):
            raise TBPTTError("advise_every needs a fixed k1 (set k1, drop k1_std)")
        if not 0 < self.advise_tolerance <= 1:
            raise TBPTTError(f"advise_tolerance is a cosine in (0, 1], got {self.advise_tolerance}")
        if self.precision not in PRECISIONS:
            raise TBPTTError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        for name in ("epochs", "log_every", "checkpoint_every", "max_skips"):
            if getattr(self, name) < 1:
                raise TBPTTError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_windows", "patience", "advise_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TBPTTError(f"{name} must be >= 1 or unset, got {value}")
        if self.eval_every < 0 or self.max_rollbacks < 0:
            raise TBPTTError("eval_every and max_rollbacks must be >= 0")
        if not 0 < self.lr < math.inf:
            raise TBPTTError(f"lr must be finite and > 0, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise TBPTTError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if self.clip_norm is not None and not 0 < self.clip_norm < math.inf:
            raise TBPTTError(f"clip_norm must be finite and > 0, or unset, got {self.clip_norm}")
        if not 0 < self.rollback_lr_factor < 1:
            raise TBPTTError(
                f"rollback_lr_factor must lie strictly between 0 and 1, "
                f"got {self.rollback_lr_factor}"
            )
        parse_device(self.device)
        if self.optimizer not in OPTIMIZERS:
            raise TBPTTError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise TBPTTError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )

    def batch_steps(self, whole: int) -> int:
        """Steps per training batch: one window (k1), several with randomised
        truncation, ``whole`` (the data's length per stream) for full BPTT."""
        if self.k1 is None:
            return whole
        return self.k1 * RANDOM_BATCH_WINDOWS if self.k1_std is not None else self.k1

    def runner(self, model: nn.Module, loss_fn: LossFn) -> Runner:
        """The engine for these settings."""
        k1: Stride = self.k1
        if self.k1_std is not None and self.k1 is not None:
            k1 = RandomTruncation(self.k1, self.k1_std, seed=self.seed)
        checkpoint = self.checkpoint_segment or self.checkpoint_activations
        return Runner(model, loss_fn, k1, self.k2, checkpoint=checkpoint)


class Trainer:
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

    The latest checkpoint is also kept in host memory (as bytes), the point a
    rollback returns to, so recovery needs no disk and works without ``run_dir``.

    Under torchrun (see :mod:`tbptt.distributed`) every process builds the same
    trainer on its own share of the streams (:func:`tbptt.distributed.shard`); the
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
    ) -> None:
        if metrics not in METRICS:
            raise TBPTTError(f"metrics must be one of {', '.join(METRICS)}, got {metrics!r}")
        if config.advise_every is not None and validation is None:
            raise TBPTTError("advise_every chooses k2 on the validation streams: give some")
        torch.manual_seed(config.seed + distributed.get_rank())  # each rank its own dropout
        self.device = distributed.device(str(device_of(config.device)))
        self.model, self.loss_fn, self.config = model.to(self.device), loss_fn, config
        distributed.broadcast_parameters(self.model)
        self.train_streams, self.validation, self.metrics = train, validation, metrics
        self.extra = extra or {}
        self.precision = MixedPrecision(config.precision, self.device)
        forward: Any = torch.compile(self.model) if config.compile else self.model
        self.runner = config.runner(forward, loss_fn)
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = self._schedule()
        self.run_dir = None if run_dir is None else Path(run_dir)
        main = distributed.is_main()
        self.log = MetricsLog(self.run_dir if main else None, callbacks if main else ())
        if self.run_dir is not None and main:  # what a crash cut short (the targets are whole)
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_temporaries(folder)
        self.epoch, self.batch, self.window = 0, 0, 0
        self.best, self.stale_evals, self.skipped = math.inf, 0, 0
        self.rollbacks, self.skips_in_row = 0, 0
        self._good: bytes | None = None
        """The last checkpoint's bytes (or the start's): where a rollback returns."""
        self._loss_sum, self._loss_count = 0.0, 0
        self._started = self._last_record = time.perf_counter()
        self._evaluated_at = -1
        """The update after which the last evaluation ran (-1: none in this process)."""

    def _schedule(self) -> torch.optim.lr_scheduler.LRScheduler:
        """Constant, or cosine decay to zero over the expected updates, then zero."""
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
        arrives (then the current batch finishes and a checkpoint is written).

        Returns the last evaluation's metrics (the last training loss without
        validation streams), with ``interrupted`` 1.0 if a signal stopped the run.
        A run that keeps diverging after ``max_rollbacks`` rollbacks raises
        ``TBPTTError``, its model back at the last good checkpoint.
        """
        result: dict[str, float] = {}
        if self._good is None:
            self._good = checkpoint.dumps(self.state_dict())
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
                if not stop.requested and self._evaluated_at != self.window:
                    result = self._evaluate_and_keep_best() or result  # the final model's metrics
                self.save("latest")
        finally:
            self.log.close()  # also when the run fails: no writer thread left behind
        self.log.finish()
        return {**(result or self._last_train_record()), "interrupted": float(stop.requested)}

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
            loss, mean, count = distributed.global_window(window.loss, window.count)
            self.precision.backward(loss)
            distributed.sum_gradients(self.model.parameters())
            self.precision.unscale(self.optimizer)
            norm = self._clip()
            if not (math.isfinite(norm) and torch.isfinite(mean)):  # a CPU-GPU sync
                self.precision.skip()
                self._skip()
                continue
            self.skips_in_row = 0
            self._step(window.lr_scale)
            self.scheduler.step()
            self.window += 1
            self._loss_sum += float(mean) * int(count)
            self._loss_count += int(count)

    def _step(self, lr_scale: float) -> None:
        """An optimizer step with the learning rate scaled by ``lr_scale`` for it alone
        (randomised truncation), restored exactly for the schedule."""
        rates = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * lr_scale
        self.precision.step(self.optimizer)
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate

    def _skip(self) -> None:
        """Count a skipped update; restart the streams if the state they carry is not
        finite (it would poison every later window, as NaN inputs do)."""
        self.skipped += 1
        self.skips_in_row += 1
        logger.warning("skipped update %d: non-finite loss or gradient", self.window + 1)
        if not is_finite(self.runner.state):
            self.runner.reset()
            logger.warning("restarted the streams: their state was not finite")

    def _roll_back(self) -> None:
        """Return to the last checkpoint (or the start) with the learning rate times
        ``rollback_lr_factor``, keeping the counts of skips and rollbacks; after
        ``max_rollbacks`` rollbacks, return there and raise ``TBPTTError``."""
        skipped, rollbacks, failed_at = self.skipped, self.rollbacks + 1, self.window
        failed_lr, config = self.optimizer.param_groups[0]["lr"], self.config
        assert self._good is not None
        self.load_state_dict(checkpoint.loads(self._good, self.device))
        saved_rollbacks, self.skipped, self.skips_in_row = self.rollbacks, skipped, 0
        self.rollbacks = min(rollbacks, config.max_rollbacks)
        if rollbacks > config.max_rollbacks:
            raise diverged(config.max_skips, failed_at, config.max_rollbacks, failed_lr)
        ratio = config.rollback_lr_factor ** (rollbacks - saved_rollbacks)
        lr = scale_learning_rate(self.optimizer, self.scheduler, ratio)
        self._loss_sum, self._loss_count = 0.0, 0
        self.log.truncate(self.window)
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
        metrics = self.evaluate(self.validation)
        self.log.record({"kind": "eval", "window": self.window, "epoch": self.epoch, **metrics})
        if metrics["loss"] < self.best:
            self.best, self.stale_evals = metrics["loss"], 0
            self.save("best")
        else:
            self.stale_evals += 1
        return metrics

    @torch.no_grad()
    def evaluate(self, streams: Streams) -> dict[str, float]:
        """Metrics over ``streams`` with the state carried across batches and no
        truncation, so the loss does not depend on k (``semantics.md``)."""
        self.model.eval()
        state, totals = None, {"loss": 0.0, "count": 0.0, "abs": 0.0, "correct": 0.0}
        for batch in streams.batches(0):
            batch = batch.to(self.device)
            outputs, state = unroll(self.model, batch.inputs, state, batch.resets)
            add_totals(totals, outputs, batch, self.loss_fn(outputs, batch.targets))
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

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact continuation needs, as tensors and plain values."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "runner": {
                "state": self.runner.state,
                "history": self.runner.history,
                "k2": self.runner.k2,
                **truncation_state(self.runner),
            },
            **self._ranks(rng),
            "scaler": self.precision.state_dict(),
            "position": {"epoch": self.epoch, "batch": self.batch, "window": self.window},
            "progress": {
                "best": self.best,
                "stale_evals": self.stale_evals,
                "skipped": self.skipped,
                "rollbacks": self.rollbacks,
                "skips_in_row": self.skips_in_row,
            },
            "rng": rng,
            "config": asdict(self.config),
            "metrics": self.metrics,
            "extra": self.extra,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (from :func:`tbptt.checkpoint.load`)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        own = distributed.own_share(state)
        self.runner.state, self.runner.history = own["runner"]["state"], own["runner"]["history"]
        if isinstance(self.runner.k1, RandomTruncation) and "truncation" in state["runner"]:
            self.runner.k1.load_state_dict(state["runner"]["truncation"])
        if isinstance(self.runner.k1, int) and state["runner"].get("k2") is not None:
            self.runner.set_k2(state["runner"]["k2"])  # as advise_every last chose it
        self.precision.load_state_dict(state.get("scaler", {}))
        self.epoch, self.batch, self.window = (
            state["position"][key] for key in ("epoch", "batch", "window")
        )
        progress = state["progress"]
        self.best, self.stale_evals, self.skipped = (
            progress["best"],
            progress["stale_evals"],
            progress["skipped"],
        )
        self.rollbacks = progress.get("rollbacks", 0)
        self.skips_in_row = progress.get("skips_in_row", 0)
        torch.set_rng_state(own["rng"]["torch"])
        if "cuda" in own["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(own["rng"]["cuda"])

    def _ranks(self, rng: dict[str, Any]) -> dict[str, Any]:
        """With several processes, ``ranks``: every rank's carried state and random
        generators, in rank order (nothing alone: ``runner`` and ``rng`` hold them)."""
        if not distributed.active():
            return {}
        runner = {"state": self.runner.state, "history": self.runner.history}
        return {"ranks": distributed.gather(distributed.to_cpu({"runner": runner, "rng": rng}))}

    def save(self, name: str) -> None:
        """Write ``checkpoints/<name>.pt`` in the run directory (if there is one); the
        ``latest`` one is also kept in memory as the point a rollback returns to. With
        several processes every rank calls this (it gathers their states); rank 0 writes."""
        if name != "latest" and self.run_dir is None:
            return
        data = checkpoint.dumps(self.state_dict())
        if name == "latest":
            self._good = data
        if self.run_dir is not None and distributed.is_main():
            folder = self.run_dir / "checkpoints"
            folder.mkdir(parents=True, exist_ok=True)
            checkpoint.save(folder / f"{name}.pt", data)

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped."""
        state = checkpoint.load(path, map_location=self.device)
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            problem = f"does not fit this run ({' '.join(str(error).split())[:100]})"
            raise file_error(path, "", problem, "resume from a checkpoint of this run") from None
        self.log.truncate(self.window)
        self._good = None  # the start of the next fit: this checkpoint


def truncation_state(runner: Runner) -> dict[str, Any]:
    """The random-truncation draws' state, for an exact resume (none for a fixed k1)."""
    if isinstance(runner.k1, RandomTruncation):
        return {"truncation": runner.k1.state_dict()}
    return {}


def add_totals(totals: dict[str, float], outputs: Tensor, batch: Batch, losses: Tensor) -> None:
    """Accumulate masked loss sums, counts, absolute errors and correct predictions."""
    mask = batch.mask
    totals["loss"] += float(torch.where(mask, losses, 0.0).sum())
    totals["count"] += float(mask.sum())
    if outputs.shape == batch.targets.shape:  # real-valued targets
        errors = (outputs - batch.targets).abs()
        errors = errors.flatten(2).mean(-1) if errors.dim() > 2 else errors
        totals["abs"] += float(torch.where(mask, errors, 0.0).sum())
    elif batch.targets.dtype == torch.int64 and outputs.dim() == batch.targets.dim() + 1:
        totals["correct"] += float(((outputs.argmax(-1) == batch.targets) & mask).sum())
