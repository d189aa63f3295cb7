"""Device names checked once, so a typo or a missing GPU is a one-line error; and
what a machine is, for the record every benchmark and example writes."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

import tbptt
from tbptt.errors import TBPTTError, quoted

FIX = "use cpu, cuda or cuda:N"


def parse_device(name: str) -> torch.device:
    """The device ``name`` spells (``cpu``, ``cuda``, ``cuda:1``, ``mps``), whether or
    not this machine has it: a config written on a GPU machine still reads elsewhere."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise TBPTTError(f"device {quoted(name)} is not a device name; {FIX}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise TBPTTError(f"device {quoted(name)} is not supported; {FIX}")
    return device


def device_of(name: str) -> torch.device:
    """The device ``name`` spells, if this machine has it."""
    device = parse_device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TBPTTError(f"device {quoted(name)}: this machine has no CUDA GPU; use cpu")
        if device.index is not None and device.index >= count:
            raise TBPTTError(
                f"device {quoted(name)}: this machine has {count} CUDA GPU(s), cuda:0 to "
                f"cuda:{count - 1}; pick one of them"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TBPTTError(f"device {quoted(name)}: this machine has no MPS device; use cpu")
    return device


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


def machine(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What results were measured on: hardware, software versions, thread counts, the
    date (and the GPU, CUDA and cuDNN for a CUDA ``device``)."""
    device = torch.device(device)
    info: dict[str, Any] = {
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
