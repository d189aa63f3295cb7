"""Per-element losses: ``loss_fn(outputs, targets) -> (T, B)``.

The engine takes the masked mean of these over a window's loss steps and streams, so
a loss function must not reduce over time or batch itself.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Softmax cross-entropy of logits ``outputs: (T, B, C)`` against class indices
    ``targets: (T, B)``; returns ``(T, B)``."""
    per_element = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
    return per_element.view(targets.shape)


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Squared error averaged over feature dimensions: ``(T, B, ...) -> (T, B)``.

    The masked mean of this over all elements equals ``nn.MSELoss()``.
    """
    squared = (outputs - targets).square()
    return squared.flatten(2).mean(-1) if squared.dim() > 2 else squared
