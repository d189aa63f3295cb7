"""Exact resume: what a trainer's checkpoint holds, and writing and reading it.

:class:`Resumable` is the part of :class:`tbptt.training.trainer.Trainer` that turns a run
into a checkpoint and back: the model, optimizer, schedule and grad scaler, the
state the streams carry and the position in them, the counts that early stopping
and recovery keep, and every random generator, so a resumed run continues exactly
as the uninterrupted one would. Under torchrun the carried state and generators of
every rank go in too (:func:`tbptt.training.distributed.own_share` picks a rank's own back).
The file format is :mod:`tbptt.checkpoint`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tbptt.engine import Runner
from tbptt.files import file_error
from tbptt.training import checkpoints, distributed
from tbptt.training.averaging import IterateAverage
from tbptt.training.config import TrainConfig
from tbptt.training.precision import MixedPrecision
from tbptt.training.progress import Progress
from tbptt.training.recovery import is_finite
from tbptt.training.reporting import MetricsLog


class Resumable:
    """Checkpoints of a trainer: :meth:`state_dict`, :meth:`load_state_dict`,
    :meth:`save` and :meth:`resume` over the attributes declared here, which the
    trainer sets up."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    runner: Runner
    precision: MixedPrecision
    config: TrainConfig
    metrics: str
    extra: dict[str, Any]
    device: torch.device
    run_dir: Path | None
    log: MetricsLog
    progress: Progress
    averaging: IterateAverage | None
    _good: bytes | None
    _pending: Iterator[bool] | None
    _candidate: bytes | None

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact continuation needs, as tensors and plain values."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "runner": self.runner.state_dict(),
            **self._ranks(rng),
            "scaler": self.precision.state_dict(),
            **self.progress.state_dict(),
            "rng": rng,
            **({} if self.averaging is None else {"averaging": self.averaging.state_dict()}),
            "config": asdict(self.config),
            "metrics": self.metrics,
            "extra": self.extra,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (from :func:`tbptt.training.checkpoints.load`)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        own = distributed.own_share(state)
        self.runner.load_state_dict({**state["runner"], **own["runner"]})
        self.precision.load_state_dict(state.get("scaler", {}))
        self.progress = Progress.from_checkpoint(state)
        self._pending = None  # the updates from here are those of the loaded position
        if self.averaging is not None:
            self.averaging.load_state_dict(state["averaging"])
        torch.set_rng_state(own["rng"]["torch"])
        if "cuda" in own["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(own["rng"]["cuda"])

    def _ranks(self, rng: dict[str, Any]) -> dict[str, Any]:
        """With several processes, ``ranks``: every rank's carried state and random
        generators, in rank order (nothing alone: ``runner`` and ``rng`` hold them)."""
        if not distributed.active():
            return {}
        runner = self.runner.state_dict()
        return {"ranks": distributed.gather(distributed.to_cpu({"runner": runner, "rng": rng}))}

    def save(self, name: str, to_disk: bool = True) -> None:
        """Write ``checkpoints/<name>.pt`` in the run directory (if there is one and
        ``to_disk``). The ``latest`` one is also kept in memory, the point a rollback
        returns to once an update from it succeeds (if its parameters are finite).
        With several processes every rank calls this (it gathers their states); rank
        0 writes."""
        if name != "latest" and self.run_dir is None:
            return
        data = checkpoints.dumps(self.state_dict())
        if name == "latest":
            self._candidate = data if is_finite(list(self.model.parameters())) else None
        if to_disk and self.run_dir is not None and distributed.is_main():
            folder = self.run_dir / "checkpoints"
            folder.mkdir(parents=True, exist_ok=True)
            checkpoints.save(folder / f"{name}.pt", data)

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped."""
        state = checkpoints.load(path, map_location=self.device)
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            problem = f"does not fit this run ({' '.join(str(error).split())[:100]})"
            raise file_error(path, problem, "resume from a checkpoint of this run") from None
        self.log.truncate(self.progress.updates, self.progress.epoch)
        self._good = self._candidate = None  # the start of the next fit: this checkpoint
