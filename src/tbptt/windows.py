"""Where the windows of TBPTT(k1, k2) fall: the truncation logic, in one place.

Window n (n = 1, 2, ...) of a sequence of T steps, as in ``semantics.md``::

    t_n = min(n * k1, T)                  its last loss step is t_n - 1
    loss steps  [t_{n-1}, t_n)            every step's loss is used exactly once
    s_n = max(t_{n-1} - (k2 - k1), 0)     the state entering s_n is a constant

    steps:  0 .......... s_n ..... t_{n-1} ......... t_n ...... T
                          |-history-|------ loss ------|
                          |<-------- k2 at most ------>|

k1 is the stride between parameter updates, k2 the number of steps a gradient
flows back; k1 = k2 = T is full BPTT.
"""

from __future__ import annotations

from dataclasses import dataclass

from tbptt.errors import TBPTTError


@dataclass(frozen=True)
class Span:
    """One window: runs steps ``[start, end)``, its loss covers ``[loss_start, end)``."""

    start: int
    loss_start: int
    end: int


def check_truncation(k1: int | None, k2: int | None) -> tuple[int | None, int | None]:
    """Validate (k1, k2) and return them with ``k2 = k1`` filled in when omitted.

    ``k1=None`` means full BPTT (then k2 must be None too).
    """
    if k1 is None:
        if k2 is not None:
            raise TBPTTError(f"k2={k2} given without k1: pass k1 too, or neither for full BPTT")
        return None, None
    k2 = k1 if k2 is None else k2
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, int):
            raise TBPTTError(f"{name} must be an int, got {k!r}")
        if k < 1:
            raise TBPTTError(f"{name} must be >= 1, got {k}")
    if k1 > k2:
        raise TBPTTError(
            f"k1={k1} > k2={k2}: TBPTT(k1, k2) updates every k1 steps and backpropagates "
            f"k2 steps, so it needs 1 <= k1 <= k2 (k2 = k1 for non-overlapping windows)"
        )
    return k1, k2


def spans(length: int, k1: int | None, k2: int | None = None, *, history: int = 0) -> list[Span]:
    """The windows of TBPTT(k1, k2) over ``length`` steps, in order.

    The first ``history`` steps are context carried from an earlier chunk: they give
    the first windows their history but carry no loss.

    >>> spans(10, 3, 5)  # doctest: +NORMALIZE_WHITESPACE
    [Span(start=0, loss_start=0, end=3), Span(start=1, loss_start=3, end=6),
     Span(start=4, loss_start=6, end=9), Span(start=7, loss_start=9, end=10)]
    """
    k1, k2 = check_truncation(k1, k2)
    if k1 is None or k2 is None:
        return [Span(0, history, length)]
    overlap = k2 - k1
    return [
        Span(max(loss_start - overlap, 0), loss_start, min(loss_start + k1, length))
        for loss_start in range(history, length, k1)
    ]
