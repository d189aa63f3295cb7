"""The windows of TBPTT(k1, k2) fall where semantics.md puts them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tbptt import TBPTTError
from tbptt.engine.windows import (
    FixedStride,
    RandomTruncation,
    Span,
    check_truncation,
    overlap,
    spans,
)


def test_overlapping_windows_worked_by_hand():
    assert spans(10, 3, 5) == [Span(0, 0, 3), Span(1, 3, 6), Span(4, 6, 9), Span(7, 9, 10)]


def test_non_overlapping_windows_and_the_short_last_one():
    assert spans(7, 3) == [Span(0, 0, 3), Span(3, 3, 6), Span(6, 6, 7)]


def test_full_bptt_is_one_window():
    assert spans(9, None) == [Span(0, 0, 9)]


def test_history_steps_carry_no_loss_but_feed_the_first_window():
    assert spans(6, 2, 4, history=2) == [Span(0, 2, 4), Span(2, 4, 6)]


@given(length=st.integers(1, 60), k1=st.integers(1, 20), extra=st.integers(0, 20))
def test_every_loss_step_belongs_to_exactly_one_window(length, k1, extra):
    windows = spans(length, k1, k1 + extra)
    covered = [i for w in windows for i in range(w.loss_start, w.end)]
    assert covered == list(range(length))
    for w in windows:
        assert w.end - w.loss_start <= k1
        assert w.end - w.start <= k1 + extra
        assert w.loss_start - w.start == min(extra, w.loss_start)


@pytest.mark.parametrize(
    ("k1", "k2", "message"),
    [
        (4, 2, "k1=4 > k2=2"),
        (0, None, "k1 must be >= 1"),
        (2, 0, "k2 must be >= 1"),
        (True, None, "k1 must be an int"),
        (None, 4, "without k1"),
    ],
)
def test_impossible_truncations_are_refused(k1, k2, message):
    with pytest.raises(TBPTTError, match=message):
        check_truncation(k1, k2)


def test_k2_defaults_to_k1():
    stride, k2 = check_truncation(5, None)
    assert (stride.mean, k2) == (5, 5)
    assert isinstance(stride, FixedStride)


def test_the_overlap_is_k2_minus_k1_and_none_for_full_bptt():
    assert overlap(3, 5) == 2
    assert overlap(RandomTruncation(4), 6) == 2  # k2 - mean
    assert overlap(None, None) == 0  # no step is run again
