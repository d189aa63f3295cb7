"""The one error type tbptt raises for bad input, and how a stopped run is reported."""

from __future__ import annotations

import difflib
import math
import os
import reprlib
from collections.abc import Iterable, Sequence

QUOTE_LENGTH = 60
"""The most characters of a string that a message quotes (its start and end)."""
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = QUOTE_LENGTH
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxdict = _QUOTE.maxset = 6
_QUOTE.maxlevel = 3


def quoted(value: object) -> str:
    """``repr(value)`` cut to a readable length, for a message that quotes what a user
    gave: a long string keeps its start and end and says how long it is, a long or
    deep container its first items (never the whole value: it may be 200 MB)."""
    text = _QUOTE.repr(value)
    if isinstance(value, str) and len(value) > QUOTE_LENGTH:
        text += f" ({len(value):,} characters)"
    return text


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


def one_of(name: str, value: object, choices: Iterable[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices``: the one error for a choice,
    naming them all and, for a near miss, the nearest."""
    choices = list(choices)
    if value in choices:
        return
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    hint = f" (did you mean {quoted(close[0])}?)" if close else ""
    raise TBPTTError(
        f"{name} {quoted(value)} is unknown: {name} must be one of {', '.join(choices)}{hint}"
    )


def check_probability(name: str, p: float) -> None:
    """Refuse a dropout probability ``p`` outside [0, 1) (1 would drop everything)."""
    if not 0.0 <= p < 1.0:
        raise TBPTTError(f"{name} must be in [0, 1), got {quoted(p)}")


def check_non_negative(name: str, value: float) -> None:
    """Refuse a ``value`` that is negative, infinite or NaN (a weight, a penalty)."""
    if not 0.0 <= value < math.inf:
        raise TBPTTError(f"{name} must be finite and >= 0, got {quoted(value)}")


def nearest(key: str, choices: Sequence[str]) -> str:
    """'did you mean X?' for the closest of ``choices``, else the list of them."""
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean {quoted(close[0])}?"
    return f"choose one of {', '.join(choices)}"
