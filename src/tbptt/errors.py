"""The one error type tbptt raises for bad input, and how a stopped run is reported."""

from __future__ import annotations

import os


class TBPTTError(ValueError):
    """Bad input to tbptt: the message names the problem and how to fix it.

    A subclass of ``ValueError``, so ``except ValueError`` catches it too.
    """


class Stopped(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM outside its training loop (which stops
    itself cleanly), and whether what it left in ``run_dir`` can be resumed."""

    def __init__(self, run_dir: str | os.PathLike[str], resumable: bool) -> None:
        super().__init__(os.fspath(run_dir))
        self.run_dir, self.resumable = os.fspath(run_dir), resumable
