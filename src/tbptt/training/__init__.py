"""Training around the engine: everything a run needs beyond the gradients.

What lives here: the :class:`Trainer` (``trainer``) and its settings
(:class:`TrainConfig`, ``config``), :func:`evaluate` (``evaluation``), a run's
:class:`Progress` (``progress``), the state a checkpoint holds and how a run
resumes from it (``resumable``), checkpoint files (``checkpoints``), divergence
recovery (``recovery``), metrics files and stop signals (``reporting``), mixed
precision (``precision``), data parallel training under torchrun (``distributed``) and
PyTorch Lightning (``lightning``, imported only when asked for: Lightning is optional).

What it may import: the engine, :mod:`tbptt.data`, :mod:`tbptt.models`,
:mod:`tbptt.diagnostics` and the shared top-level modules; never :mod:`tbptt.cli`.

The package imports its modules when first asked for (PEP 562), so that
``tbptt.training.config`` loads without torch (``tbptt --help`` needs only the config).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tbptt.training.config import TrainConfig
    from tbptt.training.evaluation import evaluate
    from tbptt.training.progress import Progress
    from tbptt.training.trainer import Trainer

LAZY = {
    "Progress": "tbptt.training.progress",
    "TrainConfig": "tbptt.training.config",
    "Trainer": "tbptt.training.trainer",
    "evaluate": "tbptt.training.evaluation",
}
"""Each public name and the module that defines it."""

__all__ = ["Progress", "TrainConfig", "Trainer", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
