"""Built-in networks: shapes, options, and resets inside one fused call."""

from __future__ import annotations

import pytest
import torch

from tbptt import TBPTTError, models, unroll
from tbptt.engine.state import leaves
from tbptt.models import recurrent

CELLS = ["elman", "lstm", "gru"]


class NoNativeResets(torch.nn.Module):
    """The same network seen through the bare protocol, so the engine splits at resets."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, inputs, state=None):
        return self.network(inputs, state)

    def initial_state(self, batch_size, device=None, dtype=None):
        return self.network.initial_state(batch_size, device, dtype)


@pytest.mark.parametrize("cell", CELLS)
def test_token_network_shapes_and_batch_first_state(cell):
    model = models.RecurrentNetwork(cell, 8, vocab_size=11, num_layers=2)
    outputs, state = model(torch.randint(0, 11, (5, 3)))
    assert outputs.shape == (5, 3, 11)
    for leaf in state if cell == "lstm" else (state,):
        assert leaf.shape == (3, 2, 8)


@pytest.mark.parametrize("cell", CELLS)
def test_feeding_the_state_back_continues_the_sequence(cell):
    torch.manual_seed(0)
    model = models.RecurrentNetwork(cell, 6, input_size=2, output_size=3).double()
    inputs = torch.randn(8, 4, 2, dtype=torch.float64)
    whole, _ = model(inputs)
    first, state = model(inputs[:5])
    second, _ = model(inputs[5:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)


@pytest.mark.parametrize(
    ("strategy", "chunk_steps"), [("packed", 2), ("packed", 16), ("split", 16)]
)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "pattern",
    ["none", "step_zero", "every_step", "one_stream", "random", "last_step"],
)
def test_resets_inside_the_model_equal_the_engine_splitting_the_window(
    cell, pattern, strategy, chunk_steps, monkeypatch
):
    monkeypatch.setattr(recurrent, "CPU_CHUNK_STEPS", chunk_steps)
    torch.manual_seed(1)
    steps, batch = 9, 4
    model = models.RecurrentNetwork(
        cell, 5, input_size=3, output_size=2, num_layers=2, reset_strategy=strategy
    ).double()
    inputs = torch.randn(steps, batch, 3, dtype=torch.float64)
    resets = torch.zeros(steps, batch, dtype=torch.bool)
    if pattern == "step_zero":
        resets[0, ::2] = True
    elif pattern == "every_step":
        resets[:] = True
    elif pattern == "one_stream":
        resets[2:5, 1] = True
    elif pattern == "random":
        resets = torch.rand(steps, batch) < 0.3
    elif pattern == "last_step":
        resets[-1, 0] = True
    state = model.initial_state(batch)
    state = tuple(s + 0.5 for s in state) if cell == "lstm" else state + 0.5
    packed, packed_state = model(inputs, state, resets=resets)
    split, split_state = unroll(NoNativeResets(model), inputs, state, resets)
    torch.testing.assert_close(packed, split, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(packed_state, split_state, rtol=1e-12, atol=1e-12)
    gradients = []
    for outputs, final in ((packed, packed_state), (split, split_state)):
        loss = outputs.square().sum() + sum(s.square().sum() for s in leaves(final))
        gradients.append(torch.autograd.grad(loss, list(model.parameters())))
    for got, want in zip(*gradients, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_a_reset_stream_matches_a_fresh_run_of_its_new_sequence():
    torch.manual_seed(2)
    model = models.LSTM(5, input_size=3, output_size=2).double()
    inputs = torch.randn(6, 2, 3, dtype=torch.float64)
    resets = torch.zeros(6, 2, dtype=torch.bool)
    resets[3, 0] = True
    outputs, _ = model(inputs, resets=resets)
    fresh, _ = model(inputs[3:, :1])
    torch.testing.assert_close(outputs[3:, :1], fresh)


def test_tied_weights_share_one_matrix():
    model = models.GRU(16, vocab_size=20, tie_weights=True)
    assert model.head.weight is model.embedding.weight
    with pytest.raises(TBPTTError, match="tie_weights"):
        models.GRU(16, vocab_size=20, embedding_size=8, tie_weights=True)


def test_dropout_is_active_in_training_only():
    torch.manual_seed(3)
    model = models.LSTM(32, vocab_size=10, num_layers=2, dropout=0.5)
    tokens = torch.randint(0, 10, (4, 2))
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])
    model.eval()
    assert torch.equal(model(tokens)[0], model(tokens)[0])


def test_one_training_step_changes_every_parameter():
    torch.manual_seed(4)
    model = models.LSTM(8, vocab_size=10, num_layers=2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    tokens = torch.randint(0, 10, (6, 3))
    resets = torch.zeros(6, 3, dtype=torch.bool)
    resets[2, 1] = True
    outputs, _ = model(tokens, resets=resets)
    torch.nn.functional.cross_entropy(outputs.flatten(0, 1), tokens.flatten()).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    for name, p in model.named_parameters():
        assert not torch.equal(p, before[name]), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer", "hidden_size": 4, "vocab_size": 3}, "unknown cell"),
        ({"cell": "lstm", "hidden_size": 4}, "exactly one of vocab_size"),
        ({"cell": "lstm", "hidden_size": 4, "vocab_size": 3, "input_size": 2}, "exactly one"),
        ({"cell": "lstm", "hidden_size": 0, "vocab_size": 3}, "hidden_size must be >= 1"),
        ({"cell": "gru", "hidden_size": 4, "input_size": 2}, "output_size is required"),
        ({"cell": "gru", "hidden_size": 4, "vocab_size": 3, "dropout": 1.0}, "dropout"),
        ({"cell": "gru", "hidden_size": 4, "vocab_size": 3, "reset_strategy": "x"}, "reset_str"),
    ],
)
def test_impossible_networks_are_refused(kwargs, message):
    with pytest.raises(TBPTTError, match=message):
        models.RecurrentNetwork(**kwargs)


def test_uniform_init_draws_the_embedding_and_head_and_leaves_the_recurrence():
    torch.manual_seed(3)
    default = models.LSTM(8, vocab_size=50, num_layers=2)
    torch.manual_seed(3)
    uniform = models.LSTM(8, vocab_size=50, num_layers=2, init="uniform:0.1")
    for weight in (uniform.embedding.weight, uniform.head.weight):
        largest = float(weight.detach().abs().max())
        assert 0.09 < largest <= 0.1  # spread over the whole interval, none outside
    assert torch.equal(uniform.head.bias, torch.zeros(50))
    for name, value in default.rnn.named_parameters():
        assert torch.equal(getattr(uniform.rnn, name), value), name


@pytest.mark.parametrize("cell", CELLS)
def test_orthogonal_init_makes_every_gate_recurrence_orthogonal(cell):
    model = models.RecurrentNetwork(cell, 6, input_size=3, output_size=2, num_layers=2)
    model.initialize("orthogonal")
    gates = {"elman": 1, "lstm": 4, "gru": 3}[cell]
    for layer in range(2):
        weight = getattr(model.rnn, f"weight_hh_l{layer}").detach().double()
        assert weight.shape == (gates * 6, 6)
        for gate in weight.split(6):
            identity = torch.eye(6, dtype=torch.float64)
            torch.testing.assert_close(gate @ gate.T, identity, atol=1e-6, rtol=0)  # float32


def test_forget_bias_sets_the_sum_of_both_forget_biases_and_nothing_else():
    torch.manual_seed(0)
    before = models.LSTM(5, input_size=2, output_size=1, num_layers=2)
    torch.manual_seed(0)
    model = models.LSTM(5, input_size=2, output_size=1, num_layers=2, forget_bias=1.0)
    for layer in range(2):
        total = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        old = getattr(before.rnn, f"bias_ih_l{layer}") + getattr(before.rnn, f"bias_hh_l{layer}")
        assert torch.equal(total[5:10], torch.ones(5))  # PyTorch's gate order: i, f, g, o
        assert torch.equal(total[:5], old[:5]) and torch.equal(total[10:], old[10:])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"init": "xavier"}, "init 'xavier' is unknown"),
        ({"init": "uniform:-1"}, "uniform:A with a finite A > 0"),
        ({"init": "uniform:big"}, "uniform:A with a finite A > 0"),
        ({"cell": "gru", "forget_bias": 1.0}, "forget_bias is for LSTMs"),
        ({"forget_bias": float("inf")}, "must be finite"),
    ],
)
def test_impossible_initialisations_are_refused_in_one_line(options, message):
    options = {"cell": "lstm", **options}
    with pytest.raises(TBPTTError, match=message):
        models.RecurrentNetwork(options.pop("cell"), 4, input_size=1, output_size=1, **options)


def test_dropout_applies_to_the_head_inputs_in_training():
    torch.manual_seed(5)
    model = models.GRU(64, input_size=3, output_size=2, dropout=0.5)  # one layer
    head_inputs = []
    model.head.register_forward_pre_hook(lambda _, args: head_inputs.append(args[0]))
    model.train()
    model(torch.randn(4, 8, 3))
    dropped = float((head_inputs[0] == 0).double().mean())  # a GRU output is never exactly 0
    assert dropped == pytest.approx(0.5, abs=0.05)  # 2048 draws: 4.5 standard errors
