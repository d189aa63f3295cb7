"""tbptt: exact full and truncated backpropagation through time for PyTorch.

The public API: ``gradients`` (every window's gradient at fixed parameters),
``Runner`` (stateful TBPTT for training, checkpointed on request),
``RandomTruncation`` (a k1 drawn per window), the built-in ``models``, per-element
``losses``, ``data`` (streams, text, series, tasks) and ``reference`` (NumPy BPTT
for Elman networks).

Names are imported when first used (PEP 562): ``import tbptt`` itself does not import
torch, so the ``tbptt`` command answers ``--help`` at once.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from tbptt.errors import TBPTTError

if TYPE_CHECKING:
    from tbptt import data, losses, models
    from tbptt.cli.forecasting import ForecastRun
    from tbptt.engine import RandomTruncation, Runner, Window, detach, gradients, unroll

try:
    __version__ = version("tbptt")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

SUBMODULES = ("data", "losses", "models")
ENGINE = ("RandomTruncation", "Runner", "Window", "detach", "gradients", "unroll")
"""Names of :mod:`tbptt.engine` exported here."""


def load_run(path: str, device: str = "cpu") -> ForecastRun:
    """A trained forecasting run (``tbptt train --csv``) from its run directory or a
    checkpoint: ``.model``, ``.transforms`` (columns, scaling, horizon, baselines),
    ``.config`` and ``.predict(csv_path)``, which returns the forecasts from every
    step of a file, ``(N, H, targets)`` in the data's units::

        run = tbptt.load_run("runs/co2")
        forecasts = run.predict("co2.csv")   # forecasts[-1]: the next H steps
    """
    from tbptt.cli.commands import load_run as load  # the command line's loader

    return load(path, device)


__all__ = [
    "RandomTruncation",
    "Runner",
    "TBPTTError",
    "Window",
    "__version__",
    "data",
    "detach",
    "gradients",
    "load_run",
    "losses",
    "models",
    "unroll",
]


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f"tbptt.{name}")
    if name in ENGINE:
        return getattr(importlib.import_module("tbptt.engine"), name)
    raise AttributeError(f"module 'tbptt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
