"""User models that follow the protocol without the built-in fast paths."""

from __future__ import annotations

import torch
from torch import nn


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
