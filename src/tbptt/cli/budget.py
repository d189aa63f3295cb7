"""Memory a command will allocate, estimated before it allocates: a run whose
parameters or data cannot fit is refused with the figure, in one line, instead of
failing deep inside torch (or being killed by the OS) once it has started.

The estimates are of the big allocations only, and round up:

- parameters: the model built on the ``meta`` device (shapes, no memory), times the
  copies training keeps (weights, gradients, the optimizer's state);
- a task's data: two tiny data sets of the task, generated and measured, scaled to
  the run's sequences and length (a task's steps are affine in its length);
- a text file: :data:`TEXT_BYTES` bytes per byte of the file (the text, its tokens
  and their ids); token files are memory-mapped and cost nothing.

Parameters are compared with the free memory of the device they go to, the data
with the host's available memory (psutil's figure if installed, else the kernel's
``MemAvailable``, else the free pages).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tbptt.errors import TBPTTError

if TYPE_CHECKING:
    from tbptt.cli.runconfig import RunConfig
    from tbptt.data.tasks import TaskData

COPIES = {"adam": 4, "adamw": 4, "sgd": 2, "ntasgd": 3}
"""Float32 copies of the parameters each optimizer trains with: the weights, their
gradients and its state (Adam's two moments; NT-ASGD's average)."""
TEXT_BYTES = 24
"""Bytes in memory per byte of a text file read whole: the string, its tokens and
their ids (a Python list and an int64 tensor)."""
PROBE_SEQUENCES, PROBE_LENGTHS = 2, (32, 64)
"""The sequences and the two lengths of the tiny data sets a task's size is measured on."""


def available_memory() -> int | None:
    """Bytes of host memory available to a new allocation, or None if unknown."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def device_memory(device: str) -> int | None:
    """Free bytes on ``device`` (a GPU's free memory; the host's for the CPU)."""
    name = torch.device(device)
    if name.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(name)[0])
    return available_memory() if name.type == "cpu" else None


def size_text(count: float) -> str:
    """``count`` bytes for a person: 1.2 GB, 16.0 TB."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def check_fits(needs: dict[str, tuple[int, str]], fix: str) -> None:
    """Refuse, with the figures, when any of ``needs`` (what: (bytes, device)) exceeds
    the memory of its device, or their sum on one device does."""
    totals: dict[str, int] = {}
    for count, device in needs.values():
        totals[device] = totals.get(device, 0) + count
    for device, total in totals.items():
        free = device_memory(device)
        if free is None or total <= free:
            continue
        parts = ", ".join(
            f"{what} {size_text(count)}" for what, (count, on) in needs.items() if on == device
        )
        where = "memory available" if device == "cpu" else f"memory free on {device}"
        raise TBPTTError(
            f"this needs about {size_text(total)} of memory ({parts}), more than the "
            f"{size_text(free)} of {where}; {fix}"
        )


def model_bytes(build: Callable[[], torch.nn.Module], copies: int) -> int:
    """Bytes of ``copies`` of the parameters and buffers of the model ``build`` makes
    (built on the meta device: nothing is allocated)."""
    with torch.device("meta"):
        model = build()
    tensors = [*model.parameters(), *model.buffers()]
    return copies * sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def task_bytes(make: Callable[[int], TaskData], length: int, scale: float = 1.0) -> int:
    """Bytes of the tensors of ``make(length)`` times ``scale``, measured on the data
    sets of two short lengths (a task's steps are affine in its length)."""

    def measured(steps: int) -> int:
        data = make(steps)
        return sum(t.numel() * t.element_size() for t in (data.inputs, data.targets, data.mask))

    short, long = PROBE_LENGTHS
    at_short, at_long = measured(short), measured(long)
    at_length = at_short + (at_long - at_short) / (long - short) * (length - short)
    return int(max(at_length, 0.0) * scale)


def run_needs(
    config: RunConfig, training: bool, build: Callable[[], torch.nn.Module] | None = None
) -> dict[str, tuple[int, str]]:
    """The estimate of a run's big allocations: its data (from the config) and, once
    the model can be built (``build``, called on the meta device), its parameters,
    with their training copies if ``training``."""
    from tbptt.cli.rundata import make_task

    data, needs = config.data, {}
    if data.task is not None:
        count = 1 if data.task == "mackey_glass" else PROBE_SEQUENCES

        def make(length: int) -> TaskData:
            return make_task(replace(data, num_sequences=count, length=length), data.seed)

        sets = 4 if training else 2  # training and validation sets, each laid out again
        scale = sets * (1 if data.task == "mackey_glass" else data.num_sequences / count)
        needs["data"] = (task_bytes(make, data.length, scale), "cpu")
    elif data.text is not None and Path(data.text).is_file():
        needs["data"] = (TEXT_BYTES * Path(data.text).stat().st_size, "cpu")
    if build is not None:
        copies = COPIES.get(config.train.optimizer, 4) if training else 1
        weights = model_bytes(build, copies)
        what = "parameters, gradients and optimizer state" if training else "parameters"
        needs[what] = (weights, config.train.device if training else "cpu")
    return needs
