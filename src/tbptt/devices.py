"""Device names checked once, so a typo or a missing GPU is a one-line error."""

from __future__ import annotations

import torch

from tbptt.errors import TBPTTError

FIX = "use cpu, cuda or cuda:N"


def parse_device(name: str) -> torch.device:
    """The device ``name`` spells (``cpu``, ``cuda``, ``cuda:1``, ``mps``), whether or
    not this machine has it: a config written on a GPU machine still reads elsewhere."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise TBPTTError(f"device {name!r} is not a device name; {FIX}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise TBPTTError(f"device {name!r} is not supported; {FIX}")
    return device


def device_of(name: str) -> torch.device:
    """The device ``name`` spells, if this machine has it."""
    device = parse_device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TBPTTError(f"device {name!r}: this machine has no CUDA GPU; use cpu")
        if device.index is not None and device.index >= count:
            raise TBPTTError(
                f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                f"cuda:{count - 1}; pick one of them"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TBPTTError(f"device {name!r}: this machine has no MPS device; use cpu")
    return device
