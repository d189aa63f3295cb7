"""What a run leaves behind and how it stops: metrics files, plots, signals, memory."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import resource
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from tbptt.figures import pyplot, save_figure
from tbptt.files import atomic_write

Record = dict[str, Any]
logger = logging.getLogger(__name__)


class MetricsLog:
    """Records of a run: appended to ``metrics.jsonl`` as they come, rewritten as
    ``metrics.csv`` and ``learning_curves.png`` at the end, written to TensorBoard
    (``tensorboard/`` in the run directory) when the ``tensorboard`` package is
    installed, and passed to ``callbacks`` (progress bars, printing)."""

    def __init__(self, run_dir: Path | None, callbacks: Sequence[Callable[[Record], None]] = ()):
        self.run_dir, self.callbacks = run_dir, list(callbacks)
        self.records: list[Record] = []
        self._tensorboard: Any = None
        self._purge_step: int | None = None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            jsonl = run_dir / "metrics.jsonl"
            if jsonl.exists():
                self.records = read_records(jsonl)

    def record(self, record: Record) -> None:
        """Keep ``record``, append it to ``metrics.jsonl`` and pass it to the callbacks."""
        self.records.append(record)
        if self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a") as file:
                file.write(json.dumps(record) + "\n")
            self._write_tensorboard(record)
        for callback in self.callbacks:
            callback(record)

    def truncate(self, window: int, epoch: int | None = None) -> None:
        """Forget records after update ``window`` (of ``epoch``: a record of update
        ``window`` in a later epoch, the evaluation at the end of ``epoch``, came after
        a checkpoint at that update too): a resumed run logs them again."""
        self.records = [r for r in self.records if not after(r, window, epoch)]
        self._purge_step = window + 1  # TensorBoard drops the events logged after it
        if self.run_dir is not None:
            lines = "".join(json.dumps(r) + "\n" for r in self.records)
            with atomic_write(self.run_dir / "metrics.jsonl") as file:
                file.write(lines.encode())

    def _write_tensorboard(self, record: Record) -> None:
        """Each number of ``record`` as a scalar ``<kind>/<name>`` at its update."""
        if self._tensorboard is None:
            if self.run_dir is None or importlib.util.find_spec("tensorboard") is None:
                return
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(self.run_dir / "tensorboard", self._purge_step)
        for name, value in record.items():
            if name not in ("kind", "window") and isinstance(value, int | float):
                self._tensorboard.add_scalar(f"{record['kind']}/{name}", value, record["window"])

    def close(self) -> None:
        """Close TensorBoard's file (its writer thread must not outlive a failed run)."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def finish(self) -> None:
        """Write ``metrics.csv`` and ``learning_curves.png`` (after :meth:`close`)."""
        if self.run_dir is None or not self.records:
            return
        columns = list(dict.fromkeys(key for record in self.records for key in record))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.records)
        with atomic_write(self.run_dir / "metrics.csv") as file:
            file.write(text.getvalue().encode())
        plot_learning_curves(self.records, self.run_dir / "learning_curves.png")


def after(record: Record, window: int, epoch: int | None) -> bool:
    """Whether ``record`` came after update ``window`` of ``epoch`` (any epoch: None)."""
    if record["window"] != window:
        return record["window"] > window
    return epoch is not None and record.get("epoch", epoch) > epoch


def read_records(path: Path) -> list[Record]:
    """The records of a ``metrics.jsonl``, less any line a crash left half-written
    (records are appended as they come, so a kill can cut the last one)."""
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("window"), int):
            records.append(record)
        elif line.strip():
            logger.warning("%s: line %d is not a whole record; dropped", path, number)
    return records


def plot_learning_curves(records: list[Record], path: Path) -> None:
    """Training and validation loss against updates, as a PNG."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    for kind, style in (("train", "-"), ("eval", "o-")):
        points = [(r["window"], r["loss"]) for r in records if r["kind"] == kind]
        if points:
            axes.plot(*zip(*points, strict=True), style, label=kind)
    axes.set_xlabel("updates (windows)")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    save_figure(figure, path)


class StopSignals:
    """Within ``with``, SIGINT and SIGTERM set ``requested`` instead of stopping at
    once, so the loop can finish its update and write a checkpoint; a second SIGINT
    raises ``KeyboardInterrupt`` as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stopping after this update (%s)", signal.Signals(number).name)

    def __enter__(self) -> StopSignals:
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated GPU memory on CUDA, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
