"""Randomised truncation (semantics.md, "Variants"): k1 drawn per window, k2 = k1 +
overlap, the learning rate scaled by k1 / mean."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tbptt
from tbptt import RandomTruncation, TBPTTError, losses
from tbptt.engine.windows import spans
from tests import naive
from tests.models_for_tests import assert_gradients_equal, make_data, make_model


def draws(truncation: RandomTruncation, count: int) -> list[int]:
    return [truncation.next() for _ in range(count)]


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 200),
    mean=st.integers(1, 30),
    std=st.sampled_from([0.0, 2.0, 5.0]),
    overlap=st.integers(0, 10),
    history=st.integers(0, 10),
    seed=st.integers(0, 2**16),
)
def test_windows_tile_the_loss_steps_and_keep_the_overlap(
    length, mean, std, overlap, history, seed
):
    history = min(history, length - 1)
    windows = spans(length, RandomTruncation(mean, std, seed=seed), mean + overlap, history=history)
    covered = [i for w in windows for i in range(w.loss_start, w.end)]
    assert covered == list(range(history, length))  # every loss step exactly once
    strides = draws(RandomTruncation(mean, std, seed=seed), len(windows))
    for window, stride in zip(windows, strides, strict=True):
        assert window.end == min(window.loss_start + stride, length)
        assert window.start == max(window.loss_start - overlap, 0)


def test_draws_follow_the_two_normals_and_the_minimum():
    assert set(draws(RandomTruncation(70, 0.0, p_mean=1.0), 50)) == {70}
    assert set(draws(RandomTruncation(70, 0.0, p_mean=0.0), 50)) == {35}
    assert min(draws(RandomTruncation(4, 20.0, minimum=3), 200)) == 3
    lengths = torch.tensor(draws(RandomTruncation(70, 5.0, seed=1), 4000), dtype=torch.float64)
    short = lengths < 52  # halfway between the two modes, 3.5 standard deviations from each
    assert 0.04 < float(short.double().mean()) < 0.06  # p_mean = 0.95
    assert abs(float(lengths[~short].mean()) - 70) < 0.3
    assert abs(float(lengths[~short].std()) - 5) < 0.3


def test_a_spread_so_large_that_draws_overflow_still_draws_integers():
    truncation = RandomTruncation(8, 1e308)
    draws = [truncation.next() for _ in range(200)]  # |noise| > 1.8 overflows to inf
    assert all(isinstance(k1, int) and 1 <= k1 <= 2**62 for k1 in draws)
    assert max(draws) == 2**62 and min(draws) == 1


def test_draws_repeat_from_the_seed_and_resume_from_the_state_dict():
    first = RandomTruncation(20, 4.0, seed=5)
    assert draws(first, 30) == draws(RandomTruncation(20, 4.0, seed=5), 30)
    assert draws(RandomTruncation(20, 4.0, seed=6), 30) != draws(
        RandomTruncation(20, 4.0, seed=5), 30
    )
    saved = first.state_dict()
    ahead = draws(first, 30)
    resumed = RandomTruncation(20, 4.0, seed=99)
    resumed.load_state_dict(saved)
    assert draws(resumed, 30) == ahead


@pytest.mark.parametrize("kind", ["lstm", "gru-packed", "dict"])
@pytest.mark.parametrize("overlap", [0, 3])
def test_gradients_equal_a_naive_unroll_window_by_window(kind, overlap):
    model = make_model(kind)
    inputs, targets, resets, mask = make_data(30, 2, reset_p=0.1, mask_p=0.8)
    bounds = naive.random_window_bounds(30, draws(RandomTruncation(5, 2.0, seed=3), 30), overlap)
    expected = naive.window_gradients(
        model, inputs, targets, losses.mse, None, resets=resets, mask=mask, bounds=bounds
    )
    truncation = RandomTruncation(5, 2.0, seed=3)
    actual = tbptt.gradients(
        model, losses.mse, inputs, targets, truncation, 5 + overlap, resets=resets, mask=mask
    )
    assert len(bounds) > 4
    assert_gradients_equal(actual, expected)


def test_each_window_reports_its_k1_and_learning_rate_scale():
    model = make_model("gru")
    inputs, targets, _, _ = make_data(40, 2)
    runner = tbptt.Runner(model, losses.mse, RandomTruncation(6, 2.0, seed=0), 9)
    strides = draws(RandomTruncation(6, 2.0, seed=0), 40)
    windows = list(runner.windows(inputs, targets))
    for window, stride in zip(windows, strides, strict=False):
        assert window.k1 == min(stride, 40 - window.loss_start)
        assert window.lr_scale == window.k1 / 6
    assert sum(window.k1 for window in windows) == 40
    fixed = list(tbptt.Runner(model, losses.mse, 6, 9).windows(inputs, targets))
    assert [w.lr_scale for w in fixed] == [1.0] * 7 and fixed[-1].k1 == 4


def test_random_truncation_composes_with_checkpointing():
    model = make_model("lstm")
    inputs, targets, resets, mask = make_data(30, 2, reset_p=0.1, mask_p=0.8)
    kwargs = {"resets": resets, "mask": mask}
    plain = tbptt.gradients(
        model, losses.mse, inputs, targets, RandomTruncation(8, seed=1), 11, **kwargs
    )
    checkpointed = tbptt.gradients(
        model,
        losses.mse,
        inputs,
        targets,
        RandomTruncation(8, seed=1),
        11,
        recompute=True,
        **kwargs,
    )
    assert_gradients_equal(checkpointed, plain)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RandomTruncation(0), "mean must be an int >= 1"),
        (lambda: RandomTruncation(7.5), "mean must be an int >= 1"),
        (lambda: RandomTruncation(10, -1.0), "std >= 0"),
        (lambda: RandomTruncation(10, p_mean=1.5), "p_mean <= 1"),
        (lambda: RandomTruncation(10, minimum=0), "minimum must be an int >= 1"),
        (lambda: tbptt.Runner(make_model("gru"), losses.mse, RandomTruncation(10), 8), "k2=8"),
        (lambda: tbptt.Runner(make_model("gru"), losses.mse, RandomTruncation(5), 7.5), "k2=7.5"),
    ],
)
def test_bad_random_truncations_are_refused(make, message):
    with pytest.raises(TBPTTError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_the_expected_stride_is_the_mean_of_the_drawn_strides():
    truncation = RandomTruncation(10, 0.0, p_mean=0.8, seed=0)  # k1 = 10 or 5
    assert truncation.expected_stride() == pytest.approx(0.8 * 10 + 0.2 * 5)
    mean_draw = sum(draws(RandomTruncation(10, 0.0, p_mean=0.8, seed=0), 4000)) / 4000
    assert mean_draw == pytest.approx(9.0, abs=0.1)  # 0.1: 3 standard errors of the draw


def test_the_defaults_are_awd_lstms():
    truncation = RandomTruncation()  # k ~ N(70, 5) with probability 0.95, else N(35, 5)
    assert (truncation.mean, truncation.std, truncation.p_mean) == (70, 5.0, 0.95)
    assert truncation.minimum == 1


def test_k2_defaults_to_the_mean_without_overlap():
    truncation = RandomTruncation(6, seed=0)
    runner = tbptt.Runner(make_model("gru"), losses.mse, truncation)
    assert (runner.stride, runner.k2, runner.overlap) == (truncation, 6, 0)
