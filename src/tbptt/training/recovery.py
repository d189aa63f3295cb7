"""Recovery from divergence: the pieces the trainer's skip and rollback use.

An update whose loss or gradient is not finite is skipped; if the state the streams
carry is not finite too (NaN inputs make it so), the streams restart. ``max_skips``
skips in a row roll the run back to its last checkpoint with the learning rate
lowered; a run that still diverges after ``max_rollbacks`` rollbacks stops with
:func:`diverged`.
"""

from __future__ import annotations

import torch

from tbptt.engine.state import State, leaves
from tbptt.errors import TBPTTError


def is_finite(state: State) -> bool:
    """Whether every element of every tensor of ``state`` is finite (a CPU-GPU sync)."""
    return all(bool(leaf.isfinite().all()) for leaf in leaves(state))


def scale_learning_rate(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ratio: float,
) -> float:
    """Multiply the learning rate by ``ratio`` for the rest of the run: the current
    one and the schedule's base (both saved in checkpoints, so a resume keeps it).
    Returns the first group's new learning rate."""
    scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        group["initial_lr"] = group.get("initial_lr", group["lr"]) * ratio
    return float(optimizer.param_groups[0]["lr"])


def diverged(
    max_skips: int, failed_at: int, rollbacks: int, lr: float, kept: tuple[str, int] | None
) -> TBPTTError:
    """The error that ends a run rollbacks could not save; ``kept``: where the last
    known-good state is and its update (none: there is no good state to keep)."""
    where = (
        f"{kept[0]} is the last good checkpoint, at update {kept[1]}"
        if kept is not None
        else "no checkpoint is known good, not even the start (its parameters are not finite)"
    )
    return TBPTTError(
        f"training diverged at update {failed_at + 1}: {max_skips} updates in a row had a "
        f"non-finite or blown-up loss or gradient, and {rollbacks} rollbacks (learning rate "
        f"lowered to {lr:.3g}) did not help; check the data for NaN or inf and lower --lr "
        f"or --clip-norm ({where})"
    )
