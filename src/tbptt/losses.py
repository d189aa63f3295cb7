"""Per-element losses: ``loss_fn(outputs, targets) -> (T, B)``.

The engine takes the masked mean of these over a window's loss steps and streams, so
a loss function must not reduce over time or batch itself.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tbptt.errors import TBPTTError


def shape_error(name: str, outputs: Tensor, targets: Tensor, expected: str) -> TBPTTError:
    """The error for outputs and targets whose shapes do not pair up."""
    return TBPTTError(
        f"{name}: outputs of shape {tuple(outputs.shape)} do not fit targets of shape "
        f"{tuple(targets.shape)}: expected {expected}; tensors are time-major (T, B, ...), "
        "so transpose batch-first ones with .transpose(0, 1)"
    )


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Softmax cross-entropy of logits ``outputs: (T, B, C)`` against class indices
    ``targets: (T, B)``; returns ``(T, B)``."""
    if outputs.dim() != 3 or tuple(outputs.shape[:2]) != tuple(targets.shape):
        raise shape_error("cross_entropy", outputs, targets, "logits (T, B, C), targets (T, B)")
    per_element = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
    return per_element.view(targets.shape)


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Squared error averaged over feature dimensions: ``(T, B, ...) -> (T, B)``.

    The masked mean of this over all elements equals ``nn.MSELoss()``.
    """
    if outputs.shape != targets.shape or outputs.dim() < 2:
        raise shape_error("mse", outputs, targets, "outputs and targets of one shape (T, B, ...)")
    squared = (outputs - targets).square()
    return squared.flatten(2).mean(-1) if squared.dim() > 2 else squared
