"""tbptt.gradients and tbptt.Runner follow semantics.md exactly.

Every gradient is checked in float64 against ``naive.window_gradients``, a per-step
autograd unroll that recomputes each window from step 0.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tbptt
from tbptt import losses, models
from tests import naive
from tests.models_for_tests import (
    HIDDEN,
    INPUT,
    KINDS,
    OUTPUT,
    assert_gradients_equal,
    make_data,
    make_model,
)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=12, deadline=None)
@given(
    steps=st.integers(1, 11),
    batch=st.integers(1, 4),
    k1=st.integers(1, 6),
    extra=st.integers(0, 5),
    reset_p=st.sampled_from([0.0, 0.2, 0.6]),
    mask_p=st.sampled_from([1.0, 0.7, 0.2]),
    seed=st.integers(0, 2**16),
)
def test_gradients_equal_a_per_step_unroll(kind, steps, batch, k1, extra, reset_p, mask_p, seed):
    model = make_model(kind)
    inputs, targets, resets, mask = make_data(steps, batch, seed, reset_p, mask_p)
    expected = naive.window_gradients(
        model, inputs, targets, losses.mse, k1, k1 + extra, resets=resets, mask=mask
    )
    actual = tbptt.gradients(
        model, losses.mse, inputs, targets, k1, k1 + extra, resets=resets, mask=mask
    )
    assert_gradients_equal(actual, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_full_bptt_is_one_window_over_the_whole_sequence(kind):
    model = make_model(kind)
    inputs, targets, resets, mask = make_data(13, 3, reset_p=0.15, mask_p=0.8)
    full = tbptt.gradients(model, losses.mse, inputs, targets, None, resets=resets, mask=mask)
    assert len(full) == 1
    same = tbptt.gradients(model, losses.mse, inputs, targets, 13, resets=resets, mask=mask)
    assert_gradients_equal(full, same)
    expected = naive.window_gradients(
        model, inputs, targets, losses.mse, None, resets=resets, mask=mask
    )
    assert_gradients_equal(full, expected)


def test_a_given_state_enters_step_zero_as_a_constant():
    model = make_model("lstm")
    inputs, targets, _, _ = make_data(7, 2)
    state = (
        torch.randn(2, 2, HIDDEN, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 2, HIDDEN, dtype=torch.float64),
    )
    actual = tbptt.gradients(model, losses.mse, inputs, targets, 3, 4, state=state)
    expected = naive.window_gradients(model, inputs, targets, losses.mse, 3, 4, state=state)
    assert_gradients_equal(actual, expected)
    assert state[0].grad is None


def test_cross_entropy_on_token_inputs_matches_the_unroll():
    torch.manual_seed(1)
    model = models.LSTM(6, vocab_size=7, num_layers=2).double()
    tokens = torch.randint(0, 7, (10, 3))
    resets = torch.rand(10, 3) < 0.2
    expected = naive.window_gradients(
        model, tokens, tokens.roll(-1, 0), losses.cross_entropy, 4, 6, resets=resets
    )
    actual = tbptt.gradients(
        model, losses.cross_entropy, tokens, tokens.roll(-1, 0), 4, 6, resets=resets
    )
    assert_gradients_equal(actual, expected)


def test_a_window_with_no_valid_element_has_zero_gradient():
    model = make_model("gru")
    inputs, targets, _, mask = make_data(6, 2)
    mask[:3] = False
    targets[:3] = 1e6
    first, second = tbptt.gradients(model, losses.mse, inputs, targets, 3, mask=mask)
    assert all(torch.equal(g, torch.zeros_like(g)) for g in first.values())
    assert all(torch.isfinite(g).all() for g in second.values())


def test_learned_initial_state_gets_gradient_through_resets():
    model = make_model("learned_start")
    inputs, targets, resets, _ = make_data(6, 2)
    resets[3, 1] = True
    state = tuple(s.detach() for s in model.initial_state(2))
    (grads,) = tbptt.gradients(model, losses.mse, inputs, targets, None, state=state, resets=resets)
    assert grads["h0"].abs().sum() > 0
    (no_reset,) = tbptt.gradients(model, losses.mse, inputs, targets, None, state=state)
    assert torch.equal(no_reset["h0"], torch.zeros_like(no_reset["h0"]))


@pytest.mark.parametrize("kind", ["lstm", "dict"])
@pytest.mark.parametrize(("k1", "k2", "chunk"), [(2, 2, 4), (2, 5, 4), (3, 7, 3), (1, 4, 2)])
def test_runner_over_chunks_gives_the_windows_of_the_whole_stream(kind, k1, k2, chunk):
    model = make_model(kind)
    inputs, targets, resets, mask = make_data(12, 3, reset_p=0.2, mask_p=0.8)
    odd_chunks = (torch.arange(12) // chunk % 2 == 1)[:, None]
    resets &= odd_chunks  # even chunks come without resets: None is passed for them
    expected = naive.window_gradients(
        model, inputs, targets, losses.mse, k1, k2, resets=resets, mask=mask
    )  # the per-step unroll of the whole stream
    runner = tbptt.Runner(model, losses.mse, k1, k2)
    names, params = zip(*model.named_parameters(), strict=True)
    actual = []
    for begin in range(0, 12, chunk):
        part = slice(begin, begin + chunk)
        part_resets = resets[part] if begin // chunk % 2 else None
        for window in runner.windows(
            inputs[part], targets[part], resets=part_resets, mask=mask[part]
        ):
            actual.append(dict(zip(names, torch.autograd.grad(window.loss, params), strict=True)))
    assert_gradients_equal(actual, expected)


def test_full_bptt_over_chunks_starts_each_chunk_from_the_carried_state():
    model = make_model("gru")
    inputs, targets, _, _ = make_data(10, 2)
    runner = tbptt.Runner(model, losses.mse, None)
    for _ in runner.windows(inputs[:6], targets[:6]):
        pass
    with torch.no_grad():
        _, carried = model(inputs[:6])
    expected = naive.window_gradients(
        model, inputs[6:], targets[6:], losses.mse, None, state=carried
    )
    params = list(model.parameters())
    [window] = runner.windows(inputs[6:], targets[6:])
    grads = torch.autograd.grad(window.loss, params)
    actual = [{n: g for (n, _), g in zip(model.named_parameters(), grads, strict=True)}]
    assert_gradients_equal(actual, expected)


def naive_training(model, inputs, targets, k1, k2, lr):
    """SGD on TBPTT(k1, k2) as semantics.md states it: window n runs from the detached
    state that the latest earlier window produced for step s_n."""
    saved = {0: None}
    for start, loss_start, end in naive.window_bounds(inputs.shape[0], k1, k2):
        h = saved[start]
        outputs = []
        for i in range(start, end):
            y, h = model(inputs[i : i + 1], h)
            saved[i + 1] = naive.detach_state(h)
            outputs.append(y)
        loss = losses.mse(torch.cat(outputs)[loss_start - start :], targets[loss_start:end])
        model.zero_grad()
        loss.mean().backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad


@pytest.mark.parametrize(("k1", "k2"), [(3, 3), (2, 5), (4, 9)])
def test_runner_training_updates_between_windows_as_defined(k1, k2):
    inputs, targets, _, _ = make_data(14, 2)
    expected = make_model("gru")
    naive_training(expected, inputs, targets, k1, k2, lr=0.1)
    model = make_model("gru")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    runner = tbptt.Runner(model, losses.mse, k1, k2)
    for window in runner.windows(inputs, targets):
        optimizer.zero_grad()
        window.loss.backward()
        optimizer.step()
    for (name, got), want in zip(model.named_parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)


def test_runner_carries_the_final_state_detached():
    model = make_model("lstm")
    inputs, targets, _, _ = make_data(8, 2)
    runner = tbptt.Runner(model, losses.mse, 4)
    for window in runner.windows(inputs, targets):
        window.loss.backward()
    _, final = model(inputs)
    for carried, want in zip(runner.state, final, strict=True):
        assert not carried.requires_grad
        torch.testing.assert_close(carried, want.detach())
    runner.reset()
    assert runner.state is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k1": 5, "k2": 3}, "k1=5 > k2=3"),
        ({"k1": 0}, "k1 must be >= 1"),
        ({"k1": 2, "k2": -1}, "k2 must be >= 1"),
        ({"k1": None, "k2": 3}, "k2=3 given without k1"),
        ({"k1": 2.5}, "k1 must be an int"),
    ],
)
def test_bad_truncation_is_refused(kwargs, message):
    model = make_model("elman")
    inputs, targets, _, _ = make_data(6, 2)
    with pytest.raises(tbptt.TBPTTError, match=message):
        tbptt.gradients(model, losses.mse, inputs, targets, **kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"targets": torch.zeros(5, 2, OUTPUT)}, r"targets shape \(5, 2, 2\)"),
        ({"resets": torch.zeros(6, 3, dtype=torch.bool)}, r"resets must have shape \(T, B\)"),
        ({"mask": torch.ones(6, dtype=torch.bool)}, r"mask must have shape \(T, B\)"),
        ({"inputs": torch.zeros(0, 2, INPUT)}, "T >= 1"),
        ({"state": torch.zeros(3, 1, HIDDEN)}, "does not match batch size 2"),
    ],
)
def test_mismatched_shapes_are_refused(change, message):
    model = make_model("elman")
    inputs, targets, _, _ = make_data(6, 2)
    args = {"inputs": inputs, "targets": targets, **change}
    inputs, targets = args.pop("inputs"), args.pop("targets")
    with pytest.raises(ValueError, match=message):
        tbptt.gradients(model, losses.mse, inputs, targets, 3, **args)


def test_a_loss_fn_that_reduces_is_refused():
    model = make_model("elman")
    inputs, targets, _, _ = make_data(6, 2)
    with pytest.raises(tbptt.TBPTTError, match="per-element losses"):
        tbptt.gradients(model, torch.nn.functional.mse_loss, inputs, targets, 3)


def test_a_state_given_to_the_runner_receives_no_gradient_through_backward():
    model = make_model("gru")
    inputs, targets, _, _ = make_data(6, 2)
    _, produced = model(inputs[:2])  # a state with a graph behind it
    given = torch.randn(2, 2, HIDDEN, dtype=torch.float64, requires_grad=True)
    for state in (given, produced):
        runner = tbptt.Runner(model, losses.mse, 3, state=state)
        for window in runner.windows(inputs, targets):
            window.loss.backward()  # a second backward through `produced` would raise
    assert given.grad is None


class TimeMajorStateRNN(torch.nn.Module):
    """Wraps nn.RNN and returns its state as it comes, (num_layers, B, H): not
    batch-first, as tbptt needs."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.RNN(INPUT, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, OUTPUT)

    def forward(self, inputs, state=None):
        hidden, state = self.rnn(inputs, state)
        return self.head(hidden), state


class BareOutputs(torch.nn.Module):
    """Returns only its outputs, no state."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(INPUT, OUTPUT)

    def forward(self, inputs, state=None):
        return self.linear(inputs)


def test_a_model_whose_state_is_not_batch_first_is_refused_on_the_first_chunk():
    torch.manual_seed(0)
    model = TimeMajorStateRNN()
    inputs, targets = torch.randn(6, 4, INPUT), torch.randn(6, 4, OUTPUT)
    resets = torch.zeros(6, 4, dtype=torch.bool)
    resets[2, 1] = True  # a reset inside the first window
    runner = tbptt.Runner(model, losses.mse, 3)
    with pytest.raises(tbptt.TBPTTError, match=r"shape \(1, 4, 4\) does not match batch size 4"):
        next(runner.windows(inputs, targets, resets=resets))


def test_a_model_that_returns_no_state_is_refused():
    inputs, targets = torch.randn(6, 2, INPUT), torch.randn(6, 2, OUTPUT)
    with pytest.raises(tbptt.TBPTTError, match=r"returned Tensor; .* returns \(outputs, state\)"):
        tbptt.gradients(BareOutputs(), losses.mse, inputs, targets, 3)


@pytest.mark.parametrize("convert", [lambda x: x.numpy(), lambda x: x.tolist()])
def test_inputs_that_are_not_tensors_are_refused(convert):
    inputs, targets, _, _ = make_data(6, 2)
    with pytest.raises(tbptt.TBPTTError, match="inputs must be a torch.Tensor"):
        tbptt.gradients(make_model("elman"), losses.mse, convert(inputs), targets, 3)


class KeywordsOnly(torch.nn.Module):
    """A wrapper whose ``forward(**kwargs)`` hides ``resets`` from its signature."""

    def __init__(self, network, accepts):
        super().__init__()
        self.network, self.accepts_resets, self.calls = network, accepts, 0

    def forward(self, inputs, state=None, **kwargs):
        self.calls += 1
        return self.network(inputs, state, **kwargs)


@pytest.mark.parametrize("accepts", [True, False])
def test_a_model_declares_whether_it_applies_resets_itself(accepts):
    model = KeywordsOnly(make_model("lstm"), accepts)
    inputs, targets, _, _ = make_data(8, 2)
    resets = torch.zeros(8, 2, dtype=torch.bool)
    resets[3, 0] = True
    expected = tbptt.gradients(model.network, losses.mse, inputs, targets, 8, resets=resets)
    actual = tbptt.gradients(model, losses.mse, inputs, targets, 8, resets=resets)
    assert model.calls == (1 if accepts else 2)  # one fused call, or split at the reset
    unwrapped = [{k.removeprefix("network."): v for k, v in g.items()} for g in actual]
    assert_gradients_equal(unwrapped, expected)


def test_the_old_argument_order_of_gradients_still_works_with_a_warning():
    model = make_model("gru")
    inputs, targets, _, _ = make_data(9, 2)
    with pytest.warns(DeprecationWarning, match="the Runner's order"):
        old = tbptt.gradients(model, inputs, targets, losses.mse, 3, 4)
    assert_gradients_equal(old, tbptt.gradients(model, losses.mse, inputs, targets, 3, 4))
