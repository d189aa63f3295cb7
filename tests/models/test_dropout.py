"""AWD-LSTM's dropouts in the built-in networks: the equations with the window's
masks, one draw per window in every call the engine makes, exact gradients."""

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


def test_an_elman_network_with_every_dropout_follows_the_equations_with_its_masks():
    torch.manual_seed(0)
    model = models.Elman(5, vocab_size=7, num_layers=2, **ALL).double().train()
    ids = torch.randint(0, 7, (6, 3))
    model.new_window()
    outputs, _ = model(ids)
    m_words, m_in, m_between, m_out = (
        mask(model, name) for name in ("embedding", "input", "hidden1", "output")
    )
    m_hh0, m_hh1 = mask(model, "weight_hh_l0"), mask(model, "weight_hh_l1")
    assert m_in.shape == (1, 3, 5) and m_words.shape == (7, 1) and m_hh0.shape == (5, 5)
    for m, p in ((m_words, 0.3), (m_in, 0.4), (m_between, 0.5), (m_out, 0.3), (m_hh0, 0.5)):
        assert set(m.unique().tolist()) <= {0.0, 1 / (1 - p)}  # dropped, or kept and scaled
    rnn = model.rnn
    x = (model.embedding.weight * m_words)[ids] * m_in
    layers = [
        (rnn.weight_ih_l0, rnn.weight_hh_l0 * m_hh0, rnn.bias_ih_l0 + rnn.bias_hh_l0),
        (rnn.weight_ih_l1, rnn.weight_hh_l1 * m_hh1, rnn.bias_ih_l1 + rnn.bias_hh_l1),
    ]
    for layer, (w_ih, w_hh, bias) in enumerate(layers):
        h, steps = torch.zeros(3, 5, dtype=torch.float64), []
        for t in range(6):
            h = torch.tanh(x[t] @ w_ih.T + h @ w_hh.T + bias)
            steps.append(h)
        x = torch.stack(steps) * (m_between if layer == 0 else m_out)
    torch.testing.assert_close(outputs, model.head(x), rtol=1e-12, atol=1e-12)


def test_the_masks_stay_for_the_window_and_change_with_the_next():
    torch.manual_seed(0)
    model = models.LSTM(4, input_size=2, output_size=1, input_dropout=0.5).double().train()
    inputs = torch.randn(5, 3, 2, dtype=torch.float64)
    model.new_window()
    first, _ = model(inputs)
    again, _ = model(inputs)  # a second call in the same window: the same masks
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    model.new_window()
    other, _ = model(inputs)
    assert not torch.equal(first, other)
    model.eval()
    plain, _ = model(inputs)
    reference = models.LSTM(4, input_size=2, output_size=1).double()
    reference.load_state_dict(model.state_dict())
    torch.testing.assert_close(plain, reference(inputs)[0], rtol=0, atol=0)  # off in eval


def test_masks_come_from_their_own_generator_so_a_recomputation_replays_dropout():
    torch.manual_seed(0)
    model = models.GRU(4, vocab_size=5, num_layers=2, **ALL).train()
    ids = torch.randint(0, 5, (4, 2))
    model.new_window()  # one draw from the global generator seeds the window's masks
    before = torch.get_rng_state()
    model(ids)
    assert model.masks.masks  # drawn...
    assert torch.equal(torch.get_rng_state(), before)  # ...without touching it


def test_without_the_masks_nothing_draws_from_the_global_generator():
    torch.manual_seed(0)
    model = models.LSTM(4, input_size=2, output_size=1, dropout=0.2)
    before = torch.get_rng_state()
    model.new_window()
    assert torch.equal(torch.get_rng_state(), before)  # seeds and results of old runs hold


def oracle(model, inputs, targets, k1, k2, resets, mask_):
    """Every window's gradient by a per-step unroll: window n draws its masks, runs
    from the state window n - 1 left at its start, and leaves the state at the next
    window's start (the windows from semantics.md's formulas, not from the engine)."""
    bounds = naive.window_bounds(inputs.shape[0], k1, k2)
    carried, result = None, []
    for n, (start, loss_start, end) in enumerate(bounds):
        model.new_window()
        next_start = bounds[n + 1][0] if n + 1 < len(bounds) else end
        h, total = carried, torch.zeros((), dtype=torch.float64)
        for i in range(start, end):
            y, h = naive.step(model, inputs[i], h, resets[i])
            if i == next_start - 1:
                carried = naive.detach_state(h)
            if i >= loss_start:
                total = (
                    total + (losses.cross_entropy(y[None], targets[i : i + 1])[0] * mask_[i]).sum()
                )
        loss = total / max(int(mask_[loss_start:end].sum()), 1)
        result.append(naive.named_gradients(model, loss))
    return result


@settings(max_examples=12, deadline=None)
@given(
    cell=st.sampled_from(["elman", "lstm", "gru"]),
    steps=st.integers(4, 12),
    k1=st.integers(1, 5),
    extra=st.integers(0, 4),
    recompute=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gradients_with_every_dropout_equal_a_per_step_unroll_with_the_same_masks(
    cell, steps, k1, extra, recompute, seed
):
    torch.manual_seed(seed)
    model = models.RecurrentNetwork(cell, 4, vocab_size=6, num_layers=2, **ALL).double().train()
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 6, (steps, 3), generator=generator)
    targets = torch.randint(0, 6, (steps, 3), generator=generator)
    resets = torch.rand(steps, 3, generator=generator) < 0.2
    valid = torch.rand(steps, 3, generator=generator) < 0.8
    k2 = k1 + extra
    torch.manual_seed(seed + 1)
    actual = tbptt.gradients(
        model, losses.cross_entropy, inputs, targets, k1, k2,
        resets=resets, mask=valid, recompute=2 if recompute else False,
    )  # fmt: skip
    torch.manual_seed(seed + 1)  # the same masks: one seed per window, in window order
    expected = oracle(model, inputs, targets, k1, k2, resets, valid)
    assert_gradients_equal(actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weight_drop": 1.0}, r"weight dropout must be in \[0, 1\)"),
        ({"hidden_dropout": -0.1}, r"hidden dropout must be in \[0, 1\)"),
        ({"embedding_dropout": 0.1, "input_size": 2}, "needs token inputs"),
    ],
)
def test_impossible_dropouts_are_refused_in_one_line(options, message):
    sizes = {"vocab_size": 5} if "input_size" not in options else {"output_size": 1}
    with pytest.raises(TBPTTError, match=message):
        models.LSTM(4, **sizes, **options)
