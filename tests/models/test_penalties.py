"""AWD-LSTM's AR and TAR penalties in the built-in networks: awd-lstm-lm's formulas
over one call, exact gradients over the engine's windows against a per-step unroll,
nothing at all when they are 0, and reported losses without them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tbptt
from tbptt import TBPTTError, losses, models
from tests import naive
from tests.models_for_tests import ALL_DROPOUTS as ALL
from tests.models_for_tests import assert_gradients_equal, mask

PENALTIES = {"activation_penalty": 2.0, "temporal_penalty": 1.0}


def test_over_one_call_the_penalties_are_awd_lstm_lms():
    torch.manual_seed(0)
    model = models.LSTM(5, vocab_size=7, num_layers=2, output_dropout=0.4, **PENALTIES)
    model = model.double().train()
    ids = torch.randint(0, 7, (6, 3))
    model.new_window()
    model(ids)
    raw = model.rnn(model.embedding(ids))[0]  # the last layer's outputs, (T, B, H)
    dropped = raw * mask(model, "output")
    expected = 2.0 * dropped.pow(2).mean() + 1.0 * (raw[1:] - raw[:-1]).pow(2).mean()
    torch.testing.assert_close(model.window_penalty(), expected, rtol=1e-12, atol=1e-12)
    assert model.window_penalty() is None  # taken once per window


def test_without_windows_each_call_has_its_own_penalty_as_in_awd_lstm():
    torch.manual_seed(0)
    model = models.GRU(4, input_size=2, output_size=1, activation_penalty=3.0).double().train()
    first = torch.randn(5, 2, 2, dtype=torch.float64)
    second = torch.randn(4, 2, 2, dtype=torch.float64)
    model(first)
    model(second)
    raw = model.rnn(second)[0]
    torch.testing.assert_close(model.window_penalty(), 3.0 * raw.pow(2).mean())
    model.eval()
    model(first)
    assert model.window_penalty() is None  # evaluation records nothing


def last_layer(state):
    """The last layer's output at this step, ``(B, H)``, from a batch-first state."""
    h = state[0] if isinstance(state, tuple) else state
    return h[:, -1]


def oracle(model, inputs, targets, k1, k2, resets, valid, alpha, beta):
    """Every window's gradient of loss + AR + TAR by a per-step unroll, with the
    counting rules written out: AR over loss steps that are not padding, TAR over
    those of them whose step before ran in the window and that do not reset."""
    bounds = naive.window_bounds(inputs.shape[0], k1, k2)
    carried, result = None, []
    for n, (start, loss_start, end) in enumerate(bounds):
        model.new_window()
        next_start = bounds[n + 1][0] if n + 1 < len(bounds) else end
        h, total, raw = carried, torch.zeros((), dtype=torch.float64), {}
        ar = tar = torch.zeros((), dtype=torch.float64)
        tar_count = 0
        for i in range(start, end):
            y, h = naive.step(model, inputs[i], h, resets[i])
            raw[i] = last_layer(h)
            if i == next_start - 1:
                carried = naive.detach_state(h)
            if i < loss_start:
                continue
            total = total + (losses.cross_entropy(y[None], targets[i : i + 1])[0] * valid[i]).sum()
            dropped = raw[i] * mask(model, "output")[0]
            ar = ar + (dropped.pow(2).mean(-1) * valid[i]).sum()
            if i > start:
                counts = valid[i] & ~resets[i]
                tar = tar + ((raw[i] - raw[i - 1]).pow(2).mean(-1) * counts).sum()
                tar_count += int(counts.sum())
        count = max(int(valid[loss_start:end].sum()), 1)
        loss = total / count + alpha * ar / count + beta * tar / max(tar_count, 1)
        result.append(naive.named_gradients(model, loss))
    return result


@settings(max_examples=12, deadline=None)
@given(
    cell=st.sampled_from(["elman", "lstm", "gru"]),
    steps=st.integers(4, 12),
    k1=st.integers(1, 5),
    extra=st.integers(0, 4),
    recompute=st.sampled_from(["no", "segments", "budget"]),
    seed=st.integers(0, 2**16),
)
def test_gradients_with_ar_and_tar_equal_a_per_step_unroll_with_the_same_masks(
    cell, steps, k1, extra, recompute, seed
):
    torch.manual_seed(seed)
    model = models.RecurrentNetwork(cell, 4, vocab_size=6, num_layers=2, **ALL, **PENALTIES)
    model = model.double().train()
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 6, (steps, 3), generator=generator)
    targets = torch.randint(0, 6, (steps, 3), generator=generator)
    resets = torch.rand(steps, 3, generator=generator) < 0.2
    valid = torch.rand(steps, 3, generator=generator) < 0.8
    k2 = k1 + extra
    options = {"segments": {"recompute": 2}, "budget": {"memory_budget": 10**9}}
    torch.manual_seed(seed + 1)
    actual = tbptt.gradients(
        model, losses.cross_entropy, inputs, targets, k1, k2,
        resets=resets, mask=valid, **options.get(recompute, {}),
    )  # fmt: skip
    torch.manual_seed(seed + 1)  # the same masks: one seed per window, in window order
    expected = oracle(model, inputs, targets, k1, k2, resets, valid, 2.0, 1.0)
    assert_gradients_equal(actual, expected, rtol=1e-10, atol=1e-12)


def windows(model, seed=0):
    """The windows of one chunk of TBPTT(3, 5) with resets and padding, as
    ``(loss, reported loss)`` pairs after each window's backward pass, and the
    gradients."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 6, (10, 3), generator=generator)
    targets = torch.randint(0, 6, (10, 3), generator=generator)
    resets = torch.rand(10, 3, generator=generator) < 0.2
    valid = torch.rand(10, 3, generator=generator) < 0.8
    runner = tbptt.Runner(model, losses.cross_entropy, 3, 5)
    torch.manual_seed(seed + 1)
    result = []
    for window in runner.windows(inputs, targets, resets=resets, mask=valid):
        model.zero_grad()
        window.loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        result.append((window.loss.detach(), window.reported_loss.detach(), grads))
    return result


def network(**penalties):
    torch.manual_seed(0)
    return models.LSTM(4, vocab_size=6, num_layers=2, **ALL, **penalties).double().train()


def test_penalties_of_zero_change_nothing_bit_for_bit():
    plain = windows(network())
    zero = windows(network(activation_penalty=0.0, temporal_penalty=0.0))
    for (loss, reported, grads), (loss_0, reported_0, grads_0) in zip(plain, zero, strict=True):
        assert torch.equal(loss, loss_0) and torch.equal(reported, reported_0)
        assert all(torch.equal(g, g_0) for g, g_0 in zip(grads, grads_0, strict=True))


def test_the_reported_loss_is_the_data_loss_alone_and_the_penalty_is_in_the_gradient():
    plain = windows(network())
    penalised = windows(network(**PENALTIES))
    for (loss, _, grads), (loss_p, reported_p, grads_p) in zip(plain, penalised, strict=True):
        assert torch.equal(reported_p, loss)  # what is reported: the loss without penalty
        assert loss_p > reported_p  # what is backpropagated: with it
        assert not all(torch.equal(g, g_p) for g, g_p in zip(grads, grads_p, strict=True))


def test_counted_steps_that_do_not_fit_the_window_are_refused_in_one_line():
    model = models.Elman(3, input_size=2, output_size=1, temporal_penalty=1.0).train()
    model.new_window()
    model(torch.randn(4, 2, 2))
    with pytest.raises(TBPTTError, match=r"counted steps \(5, 2\) do not match"):
        model.window_penalty(torch.ones(5, 2, dtype=torch.bool))


@pytest.mark.parametrize("options", [{"activation_penalty": -1.0}, {"temporal_penalty": 1e400}])
def test_negative_or_infinite_penalties_are_refused_in_one_line(options):
    with pytest.raises(TBPTTError, match="must be finite and >= 0"):
        models.LSTM(4, vocab_size=5, **options)


def test_the_steps_a_memory_probe_runs_before_a_window_are_not_counted():
    torch.manual_seed(0)
    model = models.LSTM(4, vocab_size=6, **ALL, **PENALTIES).double().train()
    inputs, targets = torch.randint(0, 6, (2, 24, 3), generator=torch.Generator().manual_seed(0))
    results = []
    for options in ({}, {"memory_budget": 10**9}):  # the budget probes 16 steps first
        torch.manual_seed(1)
        results.append(tbptt.gradients(model, losses.cross_entropy, inputs, targets, 24, **options))
    for name, grad in results[0][0].items():
        torch.testing.assert_close(results[1][0][name], grad, rtol=1e-12, atol=1e-14)
