"""Where a run is and what it has counted: :class:`Progress`, saved whole in checkpoints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

POSITION = {"epoch": "epoch", "batch": "batch", "updates": "window"}
"""The fields a checkpoint keeps under ``position``, and their names there (``window``:
the updates made, as the metrics records call it)."""


@dataclass
class Progress:
    """A run's position in its data and the counts that early stopping, recovery and
    the training log keep; a checkpoint holds all of it (:meth:`state_dict`)."""

    epoch: int = 0
    """The epoch under way."""
    batch: int = 0
    """Batches of this epoch whose windows are all done (the next one to serve)."""
    updates: int = 0
    """Parameter updates made (skipped ones not counted)."""
    best: float = math.inf
    """The best validation loss so far."""
    stale_evals: int = 0
    """Evaluations since the best one (what ``patience`` counts)."""
    skipped: int = 0
    """Updates skipped in the whole run (non-finite or blown-up)."""
    skips_in_row: int = 0
    """Updates skipped since the last one made (``max_skips`` rolls back)."""
    rollbacks: int = 0
    """Rollbacks to a known-good checkpoint."""
    first_loss: float | None = None
    """The first update's loss (of a window with unmasked steps, above zero), which
    ``blowup`` multiplies."""
    loss_sum: float = 0.0
    """The loss summed over the valid elements of the updates since the last log."""
    loss_count: int = 0
    """Those elements."""

    def state_dict(self) -> dict[str, Any]:
        """Every field, as a checkpoint lays them out: ``position`` (epoch, batch,
        window) and ``progress`` (the counts)."""
        fields = asdict(self)
        position = {saved: fields.pop(name) for name, saved in POSITION.items()}
        return {"position": position, "progress": fields}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> Progress:
        """The progress in a checkpoint (or a :meth:`state_dict`); counts that older
        checkpoints lack start from their defaults."""
        position = {name: state["position"][saved] for name, saved in POSITION.items()}
        return cls(**position, **state["progress"])
