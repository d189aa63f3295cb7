"""A model or data that breaks the engine's protocol gets a tbptt error saying what
the protocol is, not a deep torch error ("too many values to unpack")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tbptt
from tbptt import Runner


class BareTensor(nn.Module):
    """Returns its outputs alone, without the state."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, inputs, state=None):
        return self.linear(inputs)


def test_a_model_returning_a_bare_tensor_is_told_the_protocol():
    runner = Runner(BareTensor(), tbptt.losses.mse, 4)
    with pytest.raises(tbptt.TBPTTError, match=r"the model returned Tensor.*\(outputs, state\)"):
        next(runner.windows(torch.randn(8, 2, 3), torch.randn(8, 2, 2)))


def test_numpy_arrays_to_the_runner_are_refused_with_the_conversion():
    model = tbptt.models.LSTM(4, input_size=3, output_size=2)
    runner = Runner(model, tbptt.losses.mse, 4)
    inputs, targets = np.zeros((8, 2, 3), np.float32), np.zeros((8, 2, 2), np.float32)
    with pytest.raises(tbptt.TBPTTError, match="inputs must be a torch.Tensor, got ndarray"):
        next(runner.windows(inputs, torch.as_tensor(targets)))
    with pytest.raises(tbptt.TBPTTError, match="targets must be a tensor .* got ndarray"):
        next(runner.windows(torch.as_tensor(inputs), targets))
    with pytest.raises(tbptt.TBPTTError, match="mask must be a torch.Tensor, got list"):
        next(
            runner.windows(torch.as_tensor(inputs), torch.as_tensor(targets), mask=[[True] * 2] * 8)
        )
