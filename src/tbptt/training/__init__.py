"""Training around the engine: everything a run needs beyond the gradients.

What lives here: the :class:`Trainer` (``trainer``) and its settings
(:class:`TrainConfig`, ``config``), the state a checkpoint holds and how a run
resumes from it (``resumable``), checkpoint files (``checkpoints``), divergence
recovery (``recovery``), metrics files and stop signals (``reporting``), mixed
precision (``precision``), data parallel training under torchrun (``distributed``) and
PyTorch Lightning (``lightning``, imported only when asked for: Lightning is optional).

What it may import: the engine, :mod:`tbptt.data`, :mod:`tbptt.models`,
:mod:`tbptt.diagnostics` and the shared top-level modules; never :mod:`tbptt.cli`.
"""

from tbptt.training.config import TrainConfig
from tbptt.training.trainer import Trainer

__all__ = ["TrainConfig", "Trainer"]
