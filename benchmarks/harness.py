"""A small harness shared by the benchmarks: the machine, interleaved timing, JSON out.

Timing is interleaved: every repeat runs each variant once, the order reversed on
every other repeat (A B C C B A A B C ...), so slow drifts of the machine (another
process, a virtual CPU taken away by the host, frequency changes) hit every variant
alike. The figure reported is the median over repeats.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import tbptt


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: torch.device) -> dict:
    """What the figures were measured on: hardware, software versions, thread counts."""
    info = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "tbptt": tbptt.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer read after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    variants: dict[str, Callable[[], None]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each variant, ``repeats`` times, variants interleaved.

    Each callable runs one timed block (for example a fixed number of training
    windows). Warm-up is the caller's business. Element ``i`` of every list comes
    from repeat ``i``, so ratios can be paired repeat by repeat.
    """
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for repeat in range(repeats):
        for name, run in order if repeat % 2 == 0 else reversed(order):
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def steal_seconds() -> float | None:
    """CPU time the hypervisor has taken from this virtual machine since boot (the
    ``steal`` column of ``/proc/stat``), summed over CPUs; ``None`` if unknown."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def median(values: list[float]) -> float:
    """The median, the figure every benchmark reports (robust to a few slow repeats)."""
    return statistics.median(values)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile: the spread over repeats."""
    if len(values) < 2:
        return (values[0],) * 3
    low, middle, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, middle, high


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
