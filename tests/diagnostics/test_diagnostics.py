"""Gradient flow, truncation bias and the advisor, against analytic results and a
per-step autograd unroll (``tests/naive.py``), in float64."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from tbptt import TBPTTError, diagnostics, losses, models
from tbptt.data import Streams, tasks
from tbptt.diagnostics.bias import Truncated, compare
from tbptt.diagnostics.flow import default_ends
from tbptt.training.trainer import TrainConfig, Trainer
from tests import naive
from tests.models_for_tests import DictStateCell


class LinearRNN(nn.Module):
    """``h_i = W h_{i-1} + U x_i``, ``y_i = V h_i``, stepped in Python."""

    def __init__(self, recurrent: torch.Tensor, inputs: int, outputs: int) -> None:
        super().__init__()
        hidden = recurrent.shape[0]
        self.recurrent = nn.Parameter(recurrent)
        self.input = nn.Parameter(torch.randn(hidden, inputs, dtype=torch.float64))
        self.output = nn.Parameter(torch.randn(outputs, hidden, dtype=torch.float64))

    def forward(self, x, state=None):
        h = x.new_zeros(x.shape[1], self.recurrent.shape[0]) if state is None else state
        outputs = []
        for x_i in x:
            h = h @ self.recurrent.T + x_i @ self.input.T
            outputs.append(h @ self.output.T)
        return torch.stack(outputs), h


class ShiftRegister(nn.Module):
    """An exact delay line over one-hot tokens: slot 0 holds ``U onehot(x_i)``, slot j
    the token of j steps ago (a fixed shift), and the logits read slot ``delay``
    through ``V``. Only U and V train, so the gradient of a loss step comes from lag
    0 (V) and from lag ``delay`` (U), nowhere else."""

    def __init__(self, tokens: int, delay: int) -> None:
        super().__init__()
        self.tokens, self.delay = tokens, delay
        self.write = nn.Parameter(torch.eye(tokens, dtype=torch.float64))
        self.read = nn.Parameter(torch.eye(tokens, dtype=torch.float64))

    def forward(self, x, state=None):
        shape = (x.shape[1], self.delay + 1, self.tokens)
        h = torch.zeros(shape, dtype=torch.float64) if state is None else state
        outputs = []
        for x_i in x:
            written = nn.functional.one_hot(x_i, self.tokens).double() @ self.write.T
            h = torch.cat([written.unsqueeze(1), h[:, :-1]], 1)
            outputs.append(h[:, self.delay] @ self.read.T)
        return torch.stack(outputs), h


def orthogonal(size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return q


@pytest.mark.parametrize("radius", [0.5, 0.9, 1.0, 1.1])
def test_linear_rnn_gradient_norm_decays_as_the_spectral_radius_to_the_lag(radius):
    torch.manual_seed(0)
    model = LinearRNN(radius * orthogonal(6, seed=1), inputs=2, outputs=3)
    inputs = torch.randn(30, 4, 2, dtype=torch.float64)
    targets = torch.randn(30, 4, 3, dtype=torch.float64)
    flow = diagnostics.gradient_flow(model, losses.mse, inputs, targets, ends=[20, 24, 29])
    every_pair = flow.state_count == 3 * 4  # lags that every (end, stream) pair reaches
    assert every_pair[:20].all()
    lags = torch.arange(len(flow.state_norm), dtype=torch.float64)
    expected = flow.state_norm[0] * radius ** lags[every_pair]
    torch.testing.assert_close(flow.state_norm[every_pair], expected, rtol=1e-9, atol=0)
    assert flow.decay_rate() == pytest.approx(radius, rel=1e-9)
    horizon = flow.geometric_horizon(0.95)
    if radius >= 1:
        assert horizon is None
    else:
        allowed = math.sqrt(1 - 0.95**2)
        assert radius ** (horizon + 1) <= allowed < radius**horizon


def leaves(state):
    if isinstance(state, torch.Tensor):
        return [state]
    children = state.values() if isinstance(state, dict) else state
    return [leaf for child in children for leaf in leaves(child)]


def requiring_grad(state):
    if isinstance(state, torch.Tensor):
        return state.requires_grad_()
    if isinstance(state, dict):
        return {key: requiring_grad(value) for key, value in state.items()}
    return type(state)(requiring_grad(s) for s in state)


def detached_run(model, inputs, state, resets, start):
    """The state entering step ``start``, computed step by step without gradient."""
    h = state
    with torch.no_grad():
        for i in range(start):
            _, h = naive.step(model, inputs[i], h, resets[i])
    return None if h is None else naive.detach_state(h)


def naive_flow(model, inputs, targets, loss_fn, ends, resets, mask):
    """Cumulative gradients and mean state gradient norms per lag, by running every
    (end, lag) from a detached state with an autograd unroll."""
    params = [p for p in model.parameters() if p.requires_grad]
    count = sum(int(mask[end].sum()) for end in ends)
    cumulative, norms = [], []
    for lag in range(max(ends) + 1):
        total = [torch.zeros_like(p) for p in params]
        found = []
        for end in ends:
            start = max(end - lag, 0)  # an end point with fewer lags counts in full
            h = detached_run(model, inputs, None, resets, start)
            if h is not None:
                h = requiring_grad(h)
            read = h
            for i in range(start, end + 1):
                y, h = naive.step(model, inputs[i], h, resets[i])
            per_stream = loss_fn(y.unsqueeze(0), targets[end : end + 1])[0]
            for b in range(inputs.shape[1]):
                if not mask[end, b]:
                    continue
                wanted = params + ([] if read is None else leaves(read))
                grads = torch.autograd.grad(
                    per_stream[b], wanted, retain_graph=True, allow_unused=True
                )
                for t, g in zip(total, grads[: len(params)], strict=True):
                    if g is not None:
                        t += g / count
                crossed = bool(resets[start : end + 1, b].any())
                if read is not None and not crossed and end >= lag:
                    rows = [g[b] for g in grads[len(params) :] if g is not None]
                    found.append(torch.sqrt(sum(r.square().sum() for r in rows)))
        cumulative.append(torch.cat([t.flatten() for t in total]))
        norms.append(torch.stack(found).mean() if found else torch.tensor(math.nan))
    return cumulative, torch.stack(norms).double()


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru", "dict"])
def test_flow_matches_a_per_lag_autograd_unroll(kind):
    torch.manual_seed(0)
    if kind == "dict":
        model = DictStateCell(3, 4, 2).double()
    else:
        model = models.RecurrentNetwork(kind, 4, input_size=3, output_size=2, num_layers=2)
        model = model.double()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(9, 3, 3, generator=generator, dtype=torch.float64)
    targets = torch.randn(9, 3, 2, generator=generator, dtype=torch.float64)
    resets = torch.zeros(9, 3, dtype=torch.bool)
    resets[4, 1] = resets[6, 2] = True
    mask = torch.ones(9, 3, dtype=torch.bool)
    mask[8, 0] = False
    ends = [5, 8]
    flow = diagnostics.gradient_flow(
        model, losses.mse, inputs, targets, resets=resets, mask=mask, ends=ends
    )
    cumulative, norms = naive_flow(model, inputs, targets, losses.mse, ends, resets, mask)
    torch.testing.assert_close(flow.gradient, cumulative[-1], rtol=1e-9, atol=1e-12)
    previous = torch.zeros_like(cumulative[0])
    for lag, total in enumerate(cumulative):
        share = (total - previous).norm()
        assert float(flow.contribution_norm[lag]) == pytest.approx(float(share), abs=1e-12)
        expected = float(total @ cumulative[-1] / (total.norm() * cumulative[-1].norm()))
        assert float(flow.cumulative_cosine[lag]) == pytest.approx(expected, abs=1e-9)
        previous = total
    torch.testing.assert_close(flow.state_norm, norms, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_default_ends_cover_the_second_half_and_the_last_step():
    assert default_ends(100, 4) == [50, 66, 83, 99]
    assert default_ends(3, 8) == [1, 2]


def lstm_and_data(steps=12, batch=3):
    torch.manual_seed(0)
    model = models.LSTM(4, input_size=3, output_size=2, num_layers=2).double()
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(steps, batch, 3, generator=generator, dtype=torch.float64)
    targets = torch.randn(steps, batch, 2, generator=generator, dtype=torch.float64)
    resets = torch.rand(steps, batch, generator=generator) < 0.1
    mask = torch.rand(steps, batch, generator=generator) < 0.8
    return model, inputs, targets, resets, mask


@pytest.mark.parametrize("k1, k2", [(3, 3), (2, 5), (1, 4), (5, 5), (12, 12)])
def test_truncated_gradient_is_the_count_weighted_sum_of_window_gradients(k1, k2):
    model, inputs, targets, resets, mask = lstm_and_data()
    got = diagnostics.truncated_gradient(
        model, losses.mse, inputs, targets, k1, k2, resets=resets, mask=mask
    )
    windows = naive.window_gradients(
        model, inputs, targets, losses.mse, k1, k2, resets=resets, mask=mask
    )
    bounds = naive.window_bounds(inputs.shape[0], k1, k2)
    counts = [int(mask[loss_start:end].sum()) for _, loss_start, end in bounds]
    names = [name for name, _ in model.named_parameters()]
    expected = sum(
        count * torch.cat([window[name].flatten() for name in names])
        for count, window in zip(counts, windows, strict=True)
    ) / sum(counts)
    torch.testing.assert_close(got.gradient, expected, rtol=1e-9, atol=1e-12)
    assert got.windows == len(bounds)


def test_the_bias_at_k_equal_to_the_sequence_length_is_zero():
    model, inputs, targets, resets, mask = lstm_and_data()
    rows, full = diagnostics.truncation_bias(
        model, losses.mse, inputs, targets, [(12, 12), (3, 12), (4, 4)], resets=resets, mask=mask
    )
    for row in rows[:1]:
        assert row.cosine == pytest.approx(1.0, abs=1e-12)
        assert row.relative_error == pytest.approx(0.0, abs=1e-12)
    assert rows[2].relative_error > 1e-6  # k = 4 truncates
    assert full.activation_bytes > rows[2].activation_bytes > 0


def recall_task(delay, steps, batch=4):
    data = tasks.delayed_recall(batch, delay, steps=steps, symbols=4, seed=0)
    return ShiftRegister(4, delay), data


def test_the_bias_falls_as_k_grows_on_a_long_dependency():
    delay, steps = 6, 64
    model, data = recall_task(delay, steps)
    ks = [2, 4, 8, 16, 32, 64]
    rows, _ = diagnostics.truncation_bias(
        model,
        losses.cross_entropy,
        data.inputs,
        data.targets,
        [(k, k) for k in ks],
        mask=data.mask,
    )
    errors = [row.relative_error for row in rows]
    cosines = [row.cosine for row in rows]
    # windows no longer than the delay never link a target to its symbol: same bias
    assert errors[0] == pytest.approx(errors[1], rel=1e-9)
    assert all(later < earlier for earlier, later in zip(errors[1:], errors[2:], strict=False))
    assert all(later > earlier for earlier, later in zip(cosines[1:], cosines[2:], strict=False))
    assert errors[-1] == pytest.approx(0.0, abs=1e-12)


def test_the_advisor_picks_the_delay_of_the_copy_task():
    delay, copy_length = 5, 3
    lag = copy_length + delay + 1  # from a symbol to its copy
    data = tasks.copy_memory(4, delay, symbols=4, copy_length=copy_length, seed=0)
    mask = data.targets != tasks.BLANK  # the loss on the copied symbols only
    model = ShiftRegister(data.num_classes, lag)
    steps = data.inputs.shape[0]
    truncations = [(1, k2) for k2 in range(1, steps + 1)]
    advice = diagnostics.advise(
        model, losses.cross_entropy, data.inputs, data.targets, truncations, mask=mask
    )
    assert advice.recommended is not None
    assert advice.recommended.k2 - 1 == lag  # every loss step then sees `lag` steps back
    assert advice.horizon == lag
    before = [row.cosine for row in advice.rows if row.k2 - 1 < lag]
    assert max(before) < 0.95 and advice.recommended.cosine == pytest.approx(1.0, abs=1e-12)
    assert "recommended: TBPTT(1, 10)" in diagnostics.verdict(advice)
    assert "TBPTT(1, 10)" in diagnostics.table(advice)


def test_the_checkpointed_reference_is_the_full_gradient():
    model, inputs, targets, resets, mask = lstm_and_data()
    options = {"resets": resets, "mask": mask}
    _, plain = diagnostics.truncation_bias(model, losses.mse, inputs, targets, [], **options)
    _, saved = diagnostics.truncation_bias(
        model, losses.mse, inputs, targets, [], recompute=3, **options
    )
    torch.testing.assert_close(saved.gradient, plain.gradient, rtol=1e-10, atol=1e-13)


def test_max_lag_follows_the_same_gradients_over_fewer_steps():
    model, inputs, targets, resets, mask = lstm_and_data(steps=20)
    options = {"resets": resets, "mask": mask, "ends": [14, 19]}
    whole = diagnostics.gradient_flow(model, losses.mse, inputs, targets, **options)
    near = diagnostics.gradient_flow(model, losses.mse, inputs, targets, max_lag=5, **options)
    assert len(near.state_norm) == 20 - (14 - 5)
    torch.testing.assert_close(near.state_norm[:6], whole.state_norm[:6], rtol=1e-10, atol=0)
    torch.testing.assert_close(near.state_count[:6], whole.state_count[:6])


def test_bad_tolerance_is_refused():
    model, inputs, targets, _, _ = lstm_and_data()
    with pytest.raises(diagnostics.advice.TBPTTError, match="tolerance"):
        diagnostics.advise(model, losses.mse, inputs, targets, tolerance=1.5)


def test_choose_k2_takes_the_shortest_k2_whose_history_reaches_the_delay():
    model, data = recall_task(delay=6, steps=64)
    options = {"mask": data.mask}
    k2 = diagnostics.choose_k2(model, losses.cross_entropy, data.inputs, data.targets, 2, **options)
    assert k2 == 8  # TBPTT(2, 8): every loss step sees 6 or 7 steps back; (2, 4) sees 2 or 3
    short = data.inputs[:8], data.targets[:8]
    mask = data.mask[:8]
    assert diagnostics.choose_k2(model, losses.cross_entropy, *short, 2, mask=mask) == 4  # none


def test_the_trainer_rechooses_k2_and_trains_with_it():
    data = tasks.delayed_recall(8, 6, steps=64, symbols=4, seed=0)
    flat = {name: getattr(data, name).T.flatten() for name in ("inputs", "targets", "mask")}
    train = Streams(flat["inputs"], flat["targets"], 4, 2, valid=flat["mask"])
    validation = Streams(flat["inputs"], flat["targets"], 4, 64, valid=flat["mask"])
    config = TrainConfig(k1=2, advise_every=3, max_windows=6, eval_every=100)
    trainer = Trainer(
        ShiftRegister(4, 6), losses.cross_entropy, train, config, validation=validation
    )
    trainer.fit()
    advice = [record for record in trainer.log.records if record["kind"] == "advice"]
    assert [(record["window"], record["k2"]) for record in advice] == [(3, 8), (6, 8)]
    assert trainer.runner.k2 == 8 and trainer.runner.overlap == 6
    assert trainer.state_dict()["runner"]["k2"] == 8


def test_advise_every_needs_a_fixed_k1_and_validation_streams():
    with pytest.raises(TBPTTError, match="advise_every needs a fixed k1"):
        TrainConfig(k1=4, k1_std=1.0, advise_every=10)
    streams = Streams(torch.zeros(100, dtype=torch.long), torch.zeros(100, dtype=torch.long), 2, 4)
    with pytest.raises(TBPTTError, match="advise_every chooses k2 on the validation streams"):
        Trainer(ShiftRegister(4, 2), losses.cross_entropy, streams, TrainConfig(advise_every=5))


def test_the_relative_error_is_measured_against_the_full_gradient_norm():
    def gradient(*values):
        return Truncated(None, None, torch.tensor(values), 0.0, 0, 1)

    truncated, full = gradient(0.3, 0.0), gradient(0.0, 0.4)  # norms below 1
    bias = compare(truncated, full, steps=10)
    assert bias.relative_error == pytest.approx(0.5 / 0.4)  # ||(0.3, -0.4)|| / ||(0, 0.4)||
    assert bias.cosine == pytest.approx(0.0)
    assert (bias.k1, bias.k2) == (10, 10)  # full BPTT over the 10 steps


def flat_unroll(model, *args, **kwargs):
    """Full BPTT's gradient by the per-step unroll, flattened in parameter order."""
    [window] = naive.window_gradients(model, *args, None, **kwargs)
    return torch.cat([window[name].flatten() for name, _ in model.named_parameters()])


def test_the_gradient_from_a_given_state_starts_from_it():
    model, inputs, targets, _, _ = lstm_and_data()
    state = tuple(torch.randn(3, 2, 4, dtype=torch.float64) for _ in range(2))
    got = diagnostics.truncated_gradient(model, losses.mse, inputs, targets, None, state=state)
    expected = flat_unroll(model, inputs, targets, losses.mse, state=state)
    torch.testing.assert_close(got.gradient, expected, rtol=1e-9, atol=1e-12)


def test_one_valid_element_gives_its_own_gradient():
    model, inputs, targets, _, _ = lstm_and_data()
    mask = torch.zeros(12, 3, dtype=torch.bool)
    mask[7, 1] = True
    got = diagnostics.truncated_gradient(model, losses.mse, inputs, targets, None, mask=mask)
    expected = flat_unroll(model, inputs, targets, losses.mse, mask=mask)
    torch.testing.assert_close(got.gradient, expected, rtol=1e-9, atol=1e-12)


def test_a_parameter_the_loss_does_not_use_gets_a_zero_gradient():
    model, inputs, targets, _, _ = lstm_and_data()
    model.unused = nn.Parameter(torch.ones(5, dtype=torch.float64))
    got = diagnostics.truncated_gradient(model, losses.mse, inputs, targets, 3)
    assert next(model.named_parameters())[0] == "unused"  # first in parameter order
    assert torch.equal(got.gradient[:5], torch.zeros(5, dtype=torch.float64))


def test_activations_are_recomputed_only_when_asked():
    model, inputs, targets, _, _ = lstm_and_data()
    args = (model, losses.mse, inputs, targets)
    default = diagnostics.truncated_gradient(*args, None).activation_bytes
    plain = diagnostics.truncated_gradient(*args, None, recompute=False).activation_bytes
    checkpointed = diagnostics.truncated_gradient(*args, None, recompute=3).activation_bytes
    assert default == plain > checkpointed
    _, full = diagnostics.truncation_bias(*args, [], recompute=3)
    assert full.activation_bytes == checkpointed  # the reference is checkpointed too


def test_the_time_is_that_of_the_call_and_there_is_no_device_peak_on_the_cpu():
    model, inputs, targets, _, _ = lstm_and_data()
    start = time.perf_counter()
    got = diagnostics.truncated_gradient(model, losses.mse, inputs, targets, 4)
    assert 0 < got.seconds <= time.perf_counter() - start
    assert got.device_peak_bytes is None


OLD_ORDER = {  # each diagnostic: its arguments after the chunk, and what it measured
    "gradient_flow": ((), lambda flow: flow.gradient),
    "truncated_gradient": ((3, 6), lambda truncated: truncated.gradient),
    "truncation_bias": (([(3, 6)],), lambda result: result[1].gradient),
    "advise": (([(3, 6)],), lambda advice: advice.full.gradient),
    "choose_k2": ((3,), torch.tensor),
}


@pytest.mark.parametrize("name", OLD_ORDER)
def test_the_old_argument_order_of_a_diagnostic_still_works_with_a_warning(name):
    model, inputs, targets, resets, mask = lstm_and_data()
    function, (after, measured) = getattr(diagnostics, name), OLD_ORDER[name]
    options = {"resets": resets, "mask": mask}
    with pytest.warns(DeprecationWarning, match=f"{name}.*the Runner's order"):
        old = function(model, inputs, targets, losses.mse, *after, **options)
    new = function(model, losses.mse, inputs, targets, *after, **options)
    torch.testing.assert_close(measured(old), measured(new), rtol=0, atol=0)
