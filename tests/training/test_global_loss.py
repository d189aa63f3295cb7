"""Under torchrun a window's reported loss is the global masked mean over all ranks.

The other rank is played by a stand-in for the all-reduce (a sum, as gloo and NCCL
compute it), so the arithmetic is checked in one process; the two-process run is
``test_distributed.py``'s.
"""

from __future__ import annotations

import pytest
import torch

from tbptt.training import distributed


def test_the_window_loss_is_the_masked_mean_over_every_ranks_elements(monkeypatch):
    other_rank = torch.tensor([4.0 * 30, 30.0], dtype=torch.float64)  # loss 4 over 30

    def all_reduce(tensor):
        tensor.add_(other_rank)

    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    loss = torch.tensor(1.0, requires_grad=True)  # this rank: loss 1 over 10 elements
    backpropagated, mean, count = distributed.global_window(loss, torch.tensor(10))
    assert float(mean) == pytest.approx((1.0 * 10 + 4.0 * 30) / 40)  # 3.25, not 2.5
    assert int(count) == 40
    backpropagated.backward()
    assert float(loss.grad) == pytest.approx(10 / 40)  # this rank's share of the mean
