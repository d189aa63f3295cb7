"""Checkpointed BPTT gives the plain gradients in a fraction of the memory.

Gradients are checked in float64 against ``naive.window_gradients`` (a per-step
unroll); memory is counted exactly by ``live_memory.PeakLiveBytes``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tbptt
from tbptt import losses, models
from tbptt.engine import recompute
from tests import naive
from tests.live_memory import PeakLiveBytes
from tests.models_for_tests import (
    HIDDEN,
    INPUT,
    KINDS,
    OUTPUT,
    assert_gradients_equal,
    make_data,
    make_model,
)


def assert_close(actual, expected):
    assert_gradients_equal(actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=6, deadline=None)
@given(
    steps=st.integers(2, 16),
    batch=st.integers(1, 3),
    truncation=st.sampled_from([(None, 0), (3, 0), (2, 3), (4, 6)]),
    segment=st.sampled_from([True, 1, 2, 3, 5]),
    reset_p=st.sampled_from([0.0, 0.2]),
    mask_p=st.sampled_from([1.0, 0.6]),
    seed=st.integers(0, 2**16),
)
def test_checkpointed_gradients_equal_a_per_step_unroll(
    kind, steps, batch, truncation, segment, reset_p, mask_p, seed
):
    model = make_model(kind)
    inputs, targets, resets, mask = make_data(steps, batch, seed, reset_p, mask_p)
    k1, extra = truncation
    k2 = None if k1 is None else k1 + extra
    expected = naive.window_gradients(
        model, inputs, targets, losses.mse, k1, k2, resets=resets, mask=mask
    )
    actual = tbptt.gradients(
        model, losses.mse, inputs, targets, k1, k2, resets=resets, mask=mask, recompute=segment
    )
    assert_close(actual, expected)


@pytest.mark.parametrize("kind", ["lstm", "dict"])
@pytest.mark.parametrize(("k1", "k2", "chunk"), [(None, None, 6), (2, 5, 4), (4, 7, 4)])
def test_checkpointed_runner_over_chunks_equals_the_plain_one(kind, k1, k2, chunk):
    model = make_model(kind)
    inputs, targets, resets, mask = make_data(12, 2, reset_p=0.2, mask_p=0.8)
    plain = tbptt.Runner(model, losses.mse, k1, k2)
    checkpointed = tbptt.Runner(model, losses.mse, k1, k2, recompute=2)
    params = list(model.parameters())
    for begin in range(0, 12, chunk):
        part = slice(begin, begin + chunk)
        args = (inputs[part], targets[part])
        kwargs = {"resets": resets[part], "mask": mask[part]}
        pairs = zip(
            plain.windows(*args, **kwargs), checkpointed.windows(*args, **kwargs), strict=True
        )
        for want, got in pairs:
            assert (got.loss_start, got.end) == (want.loss_start, want.end)
            assert got.outputs is None or torch.equal(got.outputs, want.outputs)  # short: plain
            if k1 is None:  # one window of 6 steps in segments of 2: no outputs kept
                assert got.outputs is None
            assert torch.equal(got.count, want.count)
            torch.testing.assert_close(got.loss, want.loss, rtol=1e-12, atol=0)
            for g, w in zip(
                torch.autograd.grad(got.loss, params),
                torch.autograd.grad(want.loss, params),
                strict=True,
            ):
                torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
        for got_state, want_state in zip(
            tbptt.engine.state.leaves(checkpointed.state),
            tbptt.engine.state.leaves(plain.state),
            strict=True,
        ):
            assert not got_state.requires_grad
            torch.testing.assert_close(got_state, want_state, rtol=1e-12, atol=0)


def test_a_memory_budget_picks_the_longest_segments_that_fit():
    assert recompute.budget_segment(100, 10**9, 10.0, 1) == 100  # everything fits
    # 100 steps, 40 bytes a step, 100 a state: S = 25 needs 4 * 100 + 25 * 40 = 1400,
    # S = 26 needs 4 * 100 + 26 * 40 = 1440; below 1400, S = 22 (5 * 100 + 22 * 40)
    assert recompute.budget_segment(100, 1400, 40.0, 100) == 25
    assert recompute.budget_segment(100, 1399, 40.0, 100) == 22
    # the least any S needs is 1280 (S = 17: 6 * 100 + 17 * 40)
    assert recompute.budget_segment(100, 1280, 40.0, 100) == 17
    with pytest.raises(tbptt.TBPTTError, match=r"below the 1280 .* \(17-step segments") as error:
        recompute.budget_segment(100, 1279, 40.0, 100)
    assert "\n" not in str(error.value)


def test_the_probe_counts_saved_bytes_per_step_and_the_state():
    weight = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def run(inputs, start, state):  # per step: mm saves x (2, 3), tanh its output (2, 5)
        h = state
        for x in inputs:
            h = torch.tanh(x @ weight + h)
        return h.sum(), h

    inputs = torch.randn(40, 2, 3, dtype=torch.float64)
    state = torch.zeros(2, 5, dtype=torch.float64)
    step_bytes, state_bytes = recompute.probe(run, inputs, 30, state, [weight])
    assert (step_bytes, state_bytes) == ((2 * 3 + 2 * 5) * 8, 2 * 5 * 8)


def test_a_memory_budget_picks_the_segments_and_gives_the_plain_gradients(monkeypatch):
    model = make_model("gru")
    inputs, targets, _, mask = make_data(24, 2, mask_p=0.8)
    expected = tbptt.gradients(model, losses.mse, inputs, targets, None, mask=mask)

    def run(piece, start, state):  # what the engine runs per segment
        outputs, state = model(piece, state)
        end = start + piece.shape[0]
        return torch.where(mask[start:end], losses.mse(outputs, targets[start:end]), 0).sum(), state

    last = 24 - recompute.PROBE_STEPS
    step_bytes, state_bytes = recompute.probe(run, inputs, last, None, model.parameters())
    assert step_bytes > 0 and state_bytes == 2 * 2 * HIDDEN * 8  # (B, layers, hidden) float64
    budget = int(6 * state_bytes + 4 * step_bytes)  # 4-step segments fit, 5-step ones not
    assert recompute.budget_segment(24, budget, step_bytes, state_bytes) == 4
    segments = []
    real = recompute.torch_checkpoint

    def counting(fn, piece, *args, **kwargs):
        segments.append(piece.shape[0])
        return real(fn, piece, *args, **kwargs)

    monkeypatch.setattr(recompute, "torch_checkpoint", counting)
    actual = tbptt.gradients(
        model, losses.mse, inputs, targets, None, mask=mask, memory_budget=budget
    )
    assert segments == [4] * 6
    assert_close(actual, expected)


def segmented_gradients(model, inputs, targets, segment):
    """Full BPTT run segment by segment (one model call each, as the checkpointed
    engine calls it), without checkpointing: the random draws happen in the same
    order, so dropout masks match."""
    state, total = None, 0.0
    for start in range(0, inputs.shape[0], segment):
        outputs, state = model(inputs[start : start + segment], state)
        total = total + losses.mse(outputs, targets[start : start + segment]).sum()
    loss = total / targets.shape[:2].numel()
    return [
        dict(
            zip(
                dict(model.named_parameters()),
                torch.autograd.grad(loss, list(model.parameters())),
                strict=True,
            )
        )
    ]


def dropout_model():
    torch.manual_seed(0)
    model = models.LSTM(8, input_size=INPUT, output_size=OUTPUT, num_layers=2, dropout=0.3)
    return model.double().train()


def test_dropout_masks_are_replayed_in_the_backward_pass():
    model = dropout_model()
    inputs, targets, _, _ = make_data(12, 3)
    torch.manual_seed(7)
    expected = segmented_gradients(model, inputs, targets, 4)
    after_expected = torch.get_rng_state()
    torch.manual_seed(7)
    actual = tbptt.gradients(model, losses.mse, inputs, targets, None, recompute=4)
    assert_close(actual, expected)
    assert torch.equal(torch.get_rng_state(), after_expected)  # random state as if plain
    torch.manual_seed(8)
    other_masks = tbptt.gradients(model, losses.mse, inputs, targets, None, recompute=4)
    assert not torch.allclose(other_masks[0]["rnn.weight_hh_l0"], actual[0]["rnn.weight_hh_l0"])


def test_without_replayed_random_state_the_gradient_would_differ(monkeypatch):
    """The dropout test above can fail: recomputing with fresh masks changes the gradient."""
    model = dropout_model()
    inputs, targets, _, _ = make_data(12, 3)
    torch.manual_seed(7)
    expected = segmented_gradients(model, inputs, targets, 4)
    careless = functools.partial(torch.utils.checkpoint.checkpoint, preserve_rng_state=False)
    monkeypatch.setattr(
        recompute,
        "torch_checkpoint",
        lambda *args, preserve_rng_state, **kwargs: careless(*args, **kwargs),
    )
    torch.manual_seed(7)
    actual = tbptt.gradients(model, losses.mse, inputs, targets, None, recompute=4)
    assert not torch.allclose(actual[0]["rnn.weight_hh_l0"], expected[0]["rnn.weight_hh_l0"])


def peak_bytes(steps: int, checkpoint: bool | int) -> int:
    """Live bytes at the worst moment of one full-BPTT forward and backward pass."""
    torch.manual_seed(0)
    model = models.LSTM(16, input_size=INPUT, output_size=OUTPUT)
    inputs, targets = torch.randn(steps, 4, INPUT), torch.randn(steps, 4, OUTPUT)
    with PeakLiveBytes() as meter:
        runner = tbptt.Runner(model, losses.mse, None, recompute=checkpoint)
        for window in runner.windows(inputs, targets):
            window.loss.backward()
    return meter.peak


def test_checkpointed_memory_grows_like_the_square_root_of_the_length():
    short, long = 16, 256  # 16 times the steps
    plain = {steps: peak_bytes(steps, False) for steps in (short, long)}
    checkpointed = {steps: peak_bytes(steps, True) for steps in (short, long)}
    # the meter sees activations grow with T (fixed costs such as the parameters'
    # gradients keep the ratio below 16)
    assert plain[long] / plain[short] > 10
    assert checkpointed[long] / checkpointed[short] < 4.5  # sqrt(16) = 4 at most
    assert checkpointed[long] < plain[long] / 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recompute": 0}, "recompute must be True, False or a segment length"),
        ({"recompute": -3}, "recompute must be True, False or a segment length"),
        ({"recompute": 2.5}, "recompute must be True, False or a segment length"),
        ({"recompute": "yes"}, "recompute must be True, False or a segment length"),
        ({"memory_budget": True}, "memory_budget must be a number of bytes"),
        ({"memory_budget": 0}, "memory_budget must be a number of bytes"),
        ({"recompute": 4, "memory_budget": 2**20}, "not both"),
        ({"memory_budget": 10}, "memory_budget=10 bytes is below"),
    ],
)
def test_bad_checkpoint_settings_are_refused_in_one_line(kwargs, message):
    model = make_model("elman")
    inputs, targets, _, _ = make_data(6, 2)
    with pytest.raises(tbptt.TBPTTError, match=message) as error:
        tbptt.gradients(model, losses.mse, inputs, targets, None, **kwargs)
    assert "\n" not in str(error.value)


def test_without_a_mask_the_loss_count_is_the_loss_steps_alone():
    model = make_model("gru")
    inputs, targets, _, _ = make_data(10, 2)
    expected = naive.window_gradients(model, inputs, targets, losses.mse, 3, 5)
    runner = tbptt.Runner(model, losses.mse, 3, 5, recompute=2)
    windows = list(runner.windows(inputs, targets))
    assert [int(w.count) for w in windows] == [3 * 2, 3 * 2, 3 * 2, 1 * 2]  # not its 5 steps
    actual = tbptt.gradients(model, losses.mse, inputs, targets, 3, 5, recompute=2)
    assert_close(actual, expected)


@pytest.mark.parametrize(("steps", "segment"), [(1, 1), (2, 2), (8, 3), (9, 3), (10, 4)])
def test_the_default_segment_is_the_ceiling_of_the_square_root(steps, segment):
    unused_probe = pytest.fail  # only a memory budget measures the model
    assert recompute.Checkpointing().segment_steps(steps, unused_probe) == segment


def test_the_probe_leaves_out_parameters_and_counts_a_tensor_saved_twice_once():
    weight = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    recurrent = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)

    def run(inputs, start, state):  # h @ recurrent saves h (tanh saved it too) and recurrent
        h = state
        for x in inputs:
            h = torch.tanh(x @ weight + h @ recurrent)
        return h.sum(), h

    inputs = torch.randn(40, 2, 3, dtype=torch.float64)
    state = torch.zeros(2, 5, dtype=torch.float64)
    step_bytes, _ = recompute.probe(run, inputs, 30, state, [weight, recurrent])
    # 10 steps: each x (2, 3) and tanh output (2, 5), plus the entering state (2, 5)
    assert step_bytes == ((2 * 3 + 2 * 5) * 10 + 2 * 5) * 8 / 10


def test_a_given_segment_length_and_any_budget_of_bytes_are_taken_as_given():
    assert recompute.check_recompute(3, None) == recompute.Checkpointing(segment=3)
    assert recompute.check_recompute(False, 1) == recompute.Checkpointing(memory_budget=1)


def test_a_budget_that_only_one_step_segments_fit_picks_them():
    # 4 steps, 10 bytes a step, 1 a state: S = 1 needs 4 + 10 = 14, S = 2 needs 2 + 20
    assert recompute.budget_segment(4, 14, 10.0, 1) == 1


def test_segments_restart_where_the_next_window_starts():
    assert recompute.boundaries(0, 4, 10, 3) == [0, 3, 4, 7, 10]


def test_a_window_that_ends_before_the_overlap_carries_the_given_state():
    model = make_model("gru")
    inputs, targets, _, _ = make_data(8, 2)
    state = torch.randn(2, 2, HIDDEN, dtype=torch.float64)
    # k1 = 2, k2 = 6: windows 1 and 2 start at step 0, so window 1 hands on the state
    # entering step 0
    expected = naive.window_gradients(model, inputs, targets, losses.mse, 2, 6, state=state)
    actual = tbptt.gradients(model, losses.mse, inputs, targets, 2, 6, state=state, recompute=1)
    assert_close(actual, expected)


def test_the_old_keyword_checkpoint_still_recomputes_with_a_warning():
    model = make_model("lstm")
    inputs, targets, _, _ = make_data(12, 2)
    with pytest.warns(DeprecationWarning, match=r"Runner\(checkpoint=...\) is deprecated"):
        old = tbptt.Runner(model, losses.mse, 4, 6, checkpoint=2)
    assert old.recomputing == tbptt.Runner(model, losses.mse, 4, 6, recompute=2).recomputing
    with pytest.warns(DeprecationWarning, match=r"gradients\(checkpoint=...\)"):
        grads = tbptt.gradients(model, losses.mse, inputs, targets, 4, 6, checkpoint=2)
    assert_gradients_equal(grads, tbptt.gradients(model, losses.mse, inputs, targets, 4, 6))
