"""Where the windows of TBPTT(k1, k2) fall: the truncation logic, in one place.

Window n (n = 1, 2, ...) of a sequence of T steps, as in ``semantics.md``::

    t_n = min(n * k1, T)                  its last loss step is t_n - 1
    loss steps  [t_{n-1}, t_n)            every step's loss is used exactly once
    s_n = max(t_{n-1} - (k2 - k1), 0)     the state entering s_n is a constant

    steps:  0 .......... s_n ..... t_{n-1} ......... t_n ...... T
                          |-history-|------ loss ------|
                          |<-------- k2 at most ------>|

k1 is the stride between parameter updates, k2 the number of steps a gradient
flows back; k1 = k2 = T is full BPTT. The stride is one :class:`Stride` object,
whichever kind it is: :class:`FixedStride` (an int k1), :class:`RandomTruncation`
(each window draws its own stride and keeps the overlap ``k2 - mean``,
``semantics.md``, "Variants") or :class:`FullBPTT` (``k1=None``). Every caller asks
the stride, never which kind it is.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import torch

from tbptt.errors import TBPTTError


@dataclass(frozen=True)
class Span:
    """One window: runs steps ``[start, end)``, its loss covers ``[loss_start, end)``."""

    start: int
    loss_start: int
    end: int


class Stride:
    """k1, the steps between parameter updates: what a window's loss covers.

    ``mean`` is the stride the overlap ``k2 - mean`` and the learning-rate scale are
    measured against (``None`` for full BPTT: no overlap, no scale).
    """

    mean: int | None = None

    def next(self) -> int:
        """The next window's stride (drawn per window by a random stride)."""
        raise NotImplementedError

    def spans(self, length: int, k2: int | None, history: int = 0) -> list[Span]:
        """The windows over ``length`` steps whose first ``history`` carry no loss."""
        keep = overlap(self, k2)
        result, loss_start = [], history
        while loss_start < length:
            end = min(loss_start + self.next(), length)
            result.append(Span(max(loss_start - keep, 0), loss_start, end))
            loss_start = end
        return result

    def windows(self, steps: int) -> float:
        """The windows (updates) expected over a chunk of ``steps`` loss steps."""
        raise NotImplementedError

    def lr_scale(self, steps: int) -> float:
        """The learning-rate factor of a window of ``steps`` loss steps (1.0 unless
        the strides vary: then steps over the mean, so every step weighs the same)."""
        return 1.0

    def check_k2(self, k2: int | None) -> int | None:
        """``k2`` validated against this stride, filled in when omitted."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to stride on exactly (nothing for a fixed stride)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""


class FixedStride(Stride):
    """The same k1 for every window (the last one of a chunk may be cut short)."""

    def __init__(self, k1: int) -> None:
        check_steps("k1", k1)
        self.k1 = k1
        self.mean = k1

    def next(self) -> int:
        return self.k1

    def windows(self, steps: int) -> float:
        return math.ceil(steps / self.k1)

    def check_k2(self, k2: int | None) -> int | None:
        k2 = self.k1 if k2 is None else k2
        check_steps("k2", k2)
        if self.k1 > k2:
            raise TBPTTError(
                f"k1={self.k1} > k2={k2}: TBPTT(k1, k2) updates every k1 steps and "
                f"backpropagates k2 steps, so it needs 1 <= k1 <= k2 (k2 = k1 for "
                f"non-overlapping windows)"
            )
        return k2

    def __repr__(self) -> str:
        return f"FixedStride({self.k1})"


class FullBPTT(Stride):
    """No truncation: one window per chunk, from its start (``k1=None``)."""

    def next(self) -> int:
        return sys.maxsize  # the whole chunk

    def spans(self, length: int, k2: int | None, history: int = 0) -> list[Span]:
        return [Span(0, history, length)]

    def windows(self, steps: int) -> float:
        return 1.0

    def check_k2(self, k2: int | None) -> int | None:
        if k2 is not None:
            raise TBPTTError(f"k2={k2} given without k1: pass k1 too, or neither for full BPTT")
        return None

    def __repr__(self) -> str:
        return "FullBPTT()"


LONGEST = float(2**62)
"""The longest k1 :class:`RandomTruncation` draws."""


class RandomTruncation(Stride):
    """A k1 drawn afresh for every window (AWD-LSTM, Merity et al. 2018).

    With probability ``p_mean`` a window's k1 is ``round(N(mean, std))``, otherwise
    ``round(N(mean / 2, std))``, and never below ``minimum``. Pass it to
    :class:`tbptt.Runner` as ``k1``; ``k2`` then sets the overlap ``k2 - mean`` that
    every window keeps (``k2 = k1 + k2 - mean``). Each window's ``lr_scale`` is its
    loss steps over ``mean``: scaling the learning rate by it gives every step's loss
    the same weight whatever the window's length.

    The draws come from a ``torch.Generator`` seeded with ``seed``; its
    :meth:`state_dict` lets a resumed run draw the same lengths.
    """

    def __init__(
        self,
        mean: int = 70,
        std: float = 5.0,
        *,
        p_mean: float = 0.95,
        minimum: int = 1,
        seed: int = 0,
    ) -> None:
        for name, value in (("mean", mean), ("minimum", minimum)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TBPTTError(f"RandomTruncation {name} must be an int >= 1, got {value!r}")
        if not (math.isfinite(std) and std >= 0) or not 0.0 <= p_mean <= 1.0:
            raise TBPTTError(
                f"RandomTruncation needs std >= 0 and 0 <= p_mean <= 1, got {std} and {p_mean}"
            )
        self.mean: int = mean
        self.std, self.p_mean, self.minimum = float(std), p_mean, minimum
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> int:
        """The next window's k1."""
        short = float(torch.rand((), generator=self.generator)) >= self.p_mean
        centre = self.mean / 2 if short else self.mean
        noise = float(torch.randn((), generator=self.generator))
        # a huge std can overflow the draw to +-inf, which no int holds: bound it first
        # (no window is longer than 2**62 steps anyway)
        return round(max(self.minimum, min(centre + self.std * noise, LONGEST)))

    def expected_stride(self) -> float:
        """The mean drawn k1 (ignoring ``minimum``): ``mean * (p_mean + (1 - p_mean) / 2)``."""
        return self.mean * (self.p_mean + (1.0 - self.p_mean) / 2.0)

    def windows(self, steps: int) -> float:
        return steps / self.expected_stride() + 0.5  # the last window is cut short

    def lr_scale(self, steps: int) -> float:
        return steps / self.mean

    def check_k2(self, k2: int | None) -> int | None:
        k2 = self.mean if k2 is None else k2
        if isinstance(k2, bool) or not isinstance(k2, int) or k2 < self.mean:
            raise TBPTTError(
                f"k2={k2!r} with random k1 of mean {self.mean}: k2 must be an int >= the mean "
                f"(k2 - mean steps of overlap)"
            )
        return k2

    def state_dict(self) -> dict[str, Any]:
        """The generator's state: a run resumed from it draws the same k1s."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the draws from a :meth:`state_dict` (an empty one: from here)."""
        if "generator" in state:
            self.generator.set_state(state["generator"].cpu())

    def __repr__(self) -> str:
        return f"RandomTruncation(mean={self.mean}, std={self.std}, p_mean={self.p_mean})"


def check_steps(name: str, k: object) -> None:
    """Refuse a k1 or k2 that is not an int >= 1."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TBPTTError(f"{name} must be an int, got {k!r}")
    if k < 1:
        raise TBPTTError(f"{name} must be >= 1, got {k}")


K1 = int | Stride | None
"""k1 as callers give it: an int, a :class:`Stride`, or ``None`` for full BPTT."""


def as_stride(k1: K1) -> Stride:
    """The :class:`Stride` for ``k1`` (a stride is returned as it is)."""
    if isinstance(k1, Stride):
        return k1
    return FullBPTT() if k1 is None else FixedStride(k1)


def check_truncation(k1: K1, k2: int | None) -> tuple[Stride, int | None]:
    """Validate (k1, k2) and return the stride and k2, ``k2 = k1`` filled in when
    omitted (``k2 = mean`` for a :class:`RandomTruncation`).

    ``k1=None`` means full BPTT (then k2 must be None too).
    """
    stride = as_stride(k1)
    return stride, stride.check_k2(k2)


def overlap(k1: K1, k2: int | None) -> int:
    """The steps each window runs again before its loss steps: ``k2 - k1`` (``k2 -
    mean`` for random k1, 0 for full BPTT)."""
    mean = as_stride(k1).mean
    return 0 if mean is None or k2 is None else k2 - mean


def spans(length: int, k1: K1, k2: int | None = None, *, history: int = 0) -> list[Span]:
    """The windows of TBPTT(k1, k2) over ``length`` steps, in order.

    The first ``history`` steps are context carried from an earlier chunk: they give
    the first windows their history but carry no loss. A :class:`RandomTruncation`
    k1 draws each window's stride (the last window stops at ``length``).

    >>> spans(10, 3, 5)  # doctest: +NORMALIZE_WHITESPACE
    [Span(start=0, loss_start=0, end=3), Span(start=1, loss_start=3, end=6),
     Span(start=4, loss_start=6, end=9), Span(start=7, loss_start=9, end=10)]
    """
    stride, k2 = check_truncation(k1, k2)
    return stride.spans(length, k2, history)
