"""Mixed precision for training: autocast forward passes and, for fp16, a grad scaler.

``"bf16"`` runs the forward pass (the model and the loss) under ``torch.autocast``
in bfloat16, which has float32's range, so no scaling is needed; it works on CPUs
and recent GPUs. ``"fp16"`` autocasts to float16 and scales the loss so small
gradients do not underflow (``torch.amp.GradScaler``); an update whose gradients
overflow is skipped and the scale lowered. ``"32"`` is plain float32 (or whatever
dtype the model has). Parameters, optimizer state and the backward pass's
accumulation stay in the parameters' dtype throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor

from tbptt.errors import one_of

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Precision names and the dtype their forward pass autocasts to."""

Item = TypeVar("Item")


def check_precision(precision: str) -> None:
    """Refuse a ``precision`` that is not one of :data:`PRECISIONS`."""
    one_of("precision", precision, PRECISIONS)


class MixedPrecision:
    """Autocast and loss scaling for ``precision`` (``"32"``, ``"bf16"``, ``"fp16"``)
    on ``device``. With ``"32"`` and ``"bf16"`` the scaler is disabled and passes
    everything through, so a training loop calls the same methods in every case."""

    def __init__(self, precision: str, device: torch.device) -> None:
        check_precision(precision)
        self.dtype, self.device_type = PRECISIONS[precision], device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def forward(self, items: Iterator[Item]) -> Iterator[Item]:
        """Each item of ``items`` computed under autocast (for a generator of windows:
        their forward passes and losses), handed out with autocast off, so that the
        caller's backward pass and optimizer step run outside it."""
        while True:
            with torch.autocast(self.device_type, self.dtype, enabled=self.dtype is not None):
                item = next(items, None)
            if item is None:
                return
            yield item

    def backward(self, loss: Tensor) -> None:
        """Backpropagate ``loss`` (scaled for fp16)."""
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale, before clipping or reading them."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step ``optimizer`` and adjust the scale."""
        self.scaler.step(optimizer)
        self.scaler.update()

    def skip(self) -> None:
        """Skip this update: lower the scale after an overflow (fp16)."""
        if self.scaler.is_enabled():
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (empty unless fp16)."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state:
            self.scaler.load_state_dict(state)
