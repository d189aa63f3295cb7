"""The one error type tbptt raises for bad input."""


class TBPTTError(ValueError):
    """Bad input to tbptt: the message names the problem and how to fix it.

    A subclass of ``ValueError``, so ``except ValueError`` catches it too.
    """
