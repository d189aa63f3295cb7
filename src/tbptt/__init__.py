"""tbptt: exact full and truncated backpropagation through time for PyTorch.

The public API: ``gradients`` (every window's gradient at fixed parameters),
``Runner`` (stateful TBPTT for training, checkpointed on request),
``RandomTruncation`` (a k1 drawn per window), the built-in ``models``, per-element
``losses``, ``data`` (streams, text, series, tasks) and ``reference`` (NumPy BPTT
for Elman networks).
"""

from importlib.metadata import PackageNotFoundError, version

from tbptt import data, losses, models
from tbptt.engine import RandomTruncation, Runner, Window, detach, gradients, unroll
from tbptt.errors import TBPTTError

try:
    __version__ = version("tbptt")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "RandomTruncation",
    "Runner",
    "TBPTTError",
    "Window",
    "__version__",
    "data",
    "detach",
    "gradients",
    "losses",
    "models",
    "unroll",
]
