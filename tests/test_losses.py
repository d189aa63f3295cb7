"""The built-in losses return one loss per element, ``(T, B)``, and refuse outputs and
targets whose shapes do not pair up (they would otherwise broadcast or pair
batch-first logits with the wrong targets, and train on garbage)."""

from __future__ import annotations

import pytest
import torch

from tbptt import TBPTTError, losses


def test_cross_entropy_is_per_element():
    logits, targets = torch.randn(5, 3, 7), torch.randint(0, 7, (5, 3))
    expected = torch.stack(
        [
            torch.nn.functional.cross_entropy(logits[t], targets[t], reduction="none")
            for t in range(5)
        ]
    )
    torch.testing.assert_close(losses.cross_entropy(logits, targets), expected)


def test_mse_averages_over_features_only():
    outputs, targets = torch.randn(5, 3, 2), torch.randn(5, 3, 2)
    expected = ((outputs - targets) ** 2).mean(-1)
    torch.testing.assert_close(losses.mse(outputs, targets), expected)


def test_batch_first_logits_are_refused_naming_both_shapes():
    logits, targets = torch.randn(4, 10, 7), torch.randint(0, 7, (10, 4))
    message = r"outputs of shape \(4, 10, 7\) do not fit targets of shape \(10, 4\).*time-major"
    with pytest.raises(TBPTTError, match=message):
        losses.cross_entropy(logits, targets)


def test_targets_with_a_class_axis_are_refused():
    with pytest.raises(TBPTTError, match=r"logits \(T, B, C\), targets \(T, B\)"):
        losses.cross_entropy(torch.randn(5, 3, 7), torch.randint(0, 7, (5, 3, 1)))


def test_mse_of_shapes_that_would_broadcast_is_refused():
    message = r"outputs of shape \(5, 3, 1\) do not fit targets of shape \(5, 3, 2\)"
    with pytest.raises(TBPTTError, match=message):
        losses.mse(torch.zeros(5, 3, 1), torch.ones(5, 3, 2))
