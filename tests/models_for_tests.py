"""What the tests share: user models that follow the protocol without the built-in
fast paths, small models and data to run them on, and gradient comparisons."""

from __future__ import annotations

import torch
from torch import nn

from tbptt import models


class DictStateCell(nn.Module):
    """A leaky tanh cell with a dict state ``{"h", "trace"}``, stepped in Python."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        self.out = nn.Linear(2 * hidden_size, output_size)

    def forward(self, x, state=None):
        if state is None:
            zeros = x.new_zeros(x.shape[1], self.hidden_size)
            state = {"h": zeros, "trace": zeros}
        outputs = []
        for x_i in x:
            h = torch.tanh(self.inp(x_i) + self.rec(state["h"]))
            state = {"h": h, "trace": 0.9 * state["trace"] + 0.1 * h}
            outputs.append(self.out(torch.cat([h, state["trace"]], -1)))
        return torch.stack(outputs), state


class LearnedStartLSTM(nn.Module):
    """An ``nn.LSTMCell`` network whose initial state is learned: ``initial_state``
    returns parameters, so resets pass gradient into them."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.h0 = nn.Parameter(0.1 * torch.randn(hidden_size))
        self.c0 = nn.Parameter(0.1 * torch.randn(hidden_size))
        self.out = nn.Linear(hidden_size, output_size)

    def initial_state(self, batch_size, device=None, dtype=None):
        return (self.h0.expand(batch_size, -1), self.c0.expand(batch_size, -1))

    def forward(self, x, state=None):
        h, c = self.initial_state(x.shape[1]) if state is None else state
        outputs = []
        for x_i in x:
            h, c = self.cell(x_i, (h, c))
            outputs.append(self.out(h))
        return torch.stack(outputs), (h, c)


INPUT, HIDDEN, OUTPUT = 3, 4, 2


def make_model(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "dict":
        model = DictStateCell(INPUT, HIDDEN, OUTPUT)
    elif kind == "learned_start":
        model = LearnedStartLSTM(INPUT, HIDDEN, OUTPUT)
    else:
        cell, _, strategy = kind.partition("-")
        model = models.RecurrentNetwork(
            cell,
            HIDDEN,
            input_size=INPUT,
            output_size=OUTPUT,
            num_layers=2,
            reset_strategy=strategy or "auto",
        )
    return model.double()


def make_data(steps, batch, seed=0, reset_p=0.0, mask_p=1.0):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(steps, batch, INPUT, generator=gen, dtype=torch.float64)
    targets = torch.randn(steps, batch, OUTPUT, generator=gen, dtype=torch.float64)
    resets = torch.rand(steps, batch, generator=gen) < reset_p
    mask = torch.rand(steps, batch, generator=gen) < mask_p
    return inputs, targets, resets, mask


def assert_gradients_equal(actual, expected, rtol=1e-9, atol=1e-11):
    """Two lists of per-window gradient dicts: as many windows, the same parameter
    names, every gradient equal to the tolerances."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=atol, msg=name)


KINDS = ["elman", "lstm", "gru", "lstm-packed", "gru-packed", "dict", "learned_start"]


ALL_DROPOUTS = {
    "embedding_dropout": 0.3,
    "input_dropout": 0.4,
    "hidden_dropout": 0.5,
    "output_dropout": 0.3,
    "weight_drop": 0.5,
}
"""Every AWD-LSTM dropout of the built-in models, each switched on."""


def mask(model, prefix):
    """The one mask a built-in model drew under ``prefix`` in the current window."""
    (found,) = [value for key, value in model.masks.masks.items() if key.startswith(prefix)]
    return found
