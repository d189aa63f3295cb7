"""Burn-in (semantics.md, "Burn-in"): the first m steps of a chunk refresh a stored
state without gradient and without loss; TBPTT(k1, k2) covers the steps after them.

Every gradient is checked in float64 against a per-step computation: the burn-in
steps run one at a time under ``no_grad`` (resets applied), then
``naive.window_gradients`` runs the windows over the rest from that state.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tbptt
from tbptt import losses
from tests import naive
from tests.models_for_tests import HIDDEN, assert_gradients_equal, make_data, make_model


def per_step_burn_in(model, inputs, targets, k1, k2, burn_in, state, resets, mask):
    """The windows' gradients after ``burn_in`` steps run per step without gradient."""
    h = state
    with torch.no_grad():
        for i in range(burn_in):
            _, h = naive.step(model, inputs[i], h, resets[i])
    h = None if h is None else naive.detach_state(h)
    rest = slice(burn_in, None)
    return naive.window_gradients(
        model,
        inputs[rest],
        targets[rest],
        losses.mse,
        k1,
        k2,
        state=h,
        resets=resets[rest],
        mask=mask[rest],
    )


def stored_state(kind, batch, seed):
    """A stale state from somewhere else: the model's run over other data."""
    model = make_model(kind, seed=seed + 1)
    other, _, _, _ = make_data(5, batch, seed + 7)
    with torch.no_grad():
        _, state = model(other)
    return naive.detach_state(state)


@pytest.mark.parametrize("kind", ["lstm", "gru-packed", "elman-split", "dict", "learned_start"])
@settings(max_examples=10, deadline=None)
@given(
    steps=st.integers(2, 12),
    batch=st.integers(1, 3),
    burn_in=st.integers(1, 11),
    k1=st.integers(1, 5),
    extra=st.integers(0, 4),
    full=st.booleans(),
    reset_p=st.sampled_from([0.0, 0.3]),
    mask_p=st.sampled_from([1.0, 0.6]),
    with_state=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_burn_in_gradients_equal_a_per_step_computation(
    kind, steps, batch, burn_in, k1, extra, full, reset_p, mask_p, with_state, seed
):
    burn_in = min(burn_in, steps - 1)
    model = make_model(kind)
    inputs, targets, resets, mask = make_data(steps, batch, seed, reset_p, mask_p)
    state = stored_state(kind, batch, seed) if with_state else None
    k1, k2 = (None, None) if full else (k1, k1 + extra)
    expected = per_step_burn_in(model, inputs, targets, k1, k2, burn_in, state, resets, mask)
    actual = tbptt.gradients(
        model,
        losses.mse,
        inputs,
        targets,
        k1,
        k2,
        state=state,
        resets=resets,
        mask=mask,
        burn_in=burn_in,
    )
    assert_gradients_equal(actual, expected)


@pytest.mark.parametrize("checkpoint", [False, 2])
def test_windows_count_their_steps_from_the_chunk_start(checkpoint):
    model = make_model("gru")
    inputs, targets, _, _ = make_data(9, 2)
    runner = tbptt.Runner(model, losses.mse, 3, 5, burn_in=2, recompute=checkpoint)
    placed = [(w.loss_start, w.end) for w in runner.windows(inputs, targets)]
    assert placed == [(2, 5), (5, 8), (8, 9)]


def test_a_reset_inside_the_burn_in_discards_the_stored_state():
    model = make_model("lstm")
    inputs, targets, resets, _ = make_data(6, 2)
    resets[1] = True  # every stream restarts inside the burn-in
    stale = stored_state("lstm", 2, 0)
    from_stale = tbptt.gradients(
        model, losses.mse, inputs, targets, 2, state=stale, resets=resets, burn_in=3
    )
    from_fresh = tbptt.gradients(model, losses.mse, inputs, targets, 2, resets=resets, burn_in=3)
    assert_gradients_equal(from_stale, from_fresh)


def test_the_burn_in_refreshes_the_carried_state_and_keeps_no_history():
    model = make_model("lstm")
    inputs, targets, resets, mask = make_data(14, 3, reset_p=0.2, mask_p=0.8)
    first, second = slice(0, 7), slice(7, 14)
    runner = tbptt.Runner(model, losses.mse, 2, 4, burn_in=3)
    for window in runner.windows(inputs[first], targets[first], resets=resets[first]):
        window.loss.backward()
    _, end_of_first = tbptt.unroll(model, inputs[first], None, resets[first])
    for carried, want in zip(runner.state, end_of_first, strict=True):
        torch.testing.assert_close(carried, want.detach(), rtol=1e-12, atol=1e-12)
    names, params = zip(*model.named_parameters(), strict=True)
    actual = [
        dict(zip(names, torch.autograd.grad(w.loss, params), strict=True))
        for w in runner.windows(
            inputs[second], targets[second], resets=resets[second], mask=mask[second]
        )
    ]
    expected = per_step_burn_in(
        model, inputs[second], targets[second], 2, 4, 3, end_of_first, resets[second], mask[second]
    )
    assert_gradients_equal(actual, expected)


@pytest.mark.parametrize("burn_in", [6, 9])
def test_a_burn_in_as_long_as_the_chunk_is_refused(burn_in):
    model = make_model("elman")
    inputs, targets, _, _ = make_data(6, 2)
    with pytest.raises(tbptt.TBPTTError, match=f"burn_in={burn_in} leaves no step"):
        tbptt.gradients(model, losses.mse, inputs, targets, 3, burn_in=burn_in)


@pytest.mark.parametrize("burn_in", [-1, 1.5, True])
def test_a_burn_in_that_is_not_a_count_is_refused(burn_in):
    with pytest.raises(tbptt.TBPTTError, match="burn_in must be an int >= 0"):
        tbptt.Runner(make_model("elman"), losses.mse, 3, burn_in=burn_in)


def test_the_burn_in_checks_the_stored_state_batch_first():
    model = make_model("elman")
    inputs, targets, _, _ = make_data(6, 2)
    with pytest.raises(tbptt.TBPTTError, match="does not match batch size 2"):
        tbptt.gradients(
            model, losses.mse, inputs, targets, 3, state=torch.zeros(3, 2, HIDDEN), burn_in=2
        )
