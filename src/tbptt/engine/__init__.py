"""The engine: exact full and truncated BPTT for any recurrent model.

What lives here: the :class:`Runner` and :func:`gradients` (``runner``), the layout
of TBPTT(k1, k2) windows over a sequence (``windows``), the carried state as any
nesting of tensors (``state``), activation recomputation for exact BPTT in bounded
memory (``recompute``) and the bytes autograd saves (``memory``).

What it may import: PyTorch, NumPy and the shared top-level modules
(:mod:`tbptt.errors`); never :mod:`tbptt.training`, :mod:`tbptt.cli`,
:mod:`tbptt.diagnostics`, :mod:`tbptt.data` or :mod:`tbptt.models` (the
import-linter contracts in ``pyproject.toml`` hold it to that).
"""

from tbptt.engine.runner import LossFn, Runner, Targets, Window, gradients, unroll
from tbptt.engine.state import State, detach
from tbptt.engine.windows import FixedStride, FullBPTT, RandomTruncation, Stride

__all__ = [
    "FixedStride",
    "FullBPTT",
    "LossFn",
    "RandomTruncation",
    "Runner",
    "State",
    "Stride",
    "Targets",
    "Window",
    "detach",
    "gradients",
    "unroll",
]
