"""Targets as a nested structure: every leaf is sliced along time like the inputs and
the loss function receives the structure whole (a loss needing several targets)."""

from __future__ import annotations

import pytest
import torch

import tbptt
from tbptt import losses
from tests.models_for_tests import OUTPUT, assert_gradients_equal, make_data, make_model


def weighted_mse(outputs, targets):
    """``weight * mse`` from ``{"y": (T, B, O), "weight": (T, B)}``."""
    return targets["weight"] * losses.mse(outputs, targets["y"])


def packed_weighted_mse(outputs, packed):
    """The same loss from one tensor ``(T, B, O + 1)``: ``y`` then the weight."""
    return packed[..., OUTPUT] * losses.mse(outputs, packed[..., :OUTPUT])


@pytest.mark.parametrize(("k1", "k2", "checkpoint"), [(3, 5, False), (2, 2, 2), (None, None, 3)])
def test_nested_targets_give_the_gradients_of_one_packed_tensor(k1, k2, checkpoint):
    model = make_model("lstm")
    inputs, y, resets, mask = make_data(10, 3, reset_p=0.2, mask_p=0.8)
    weight = torch.rand(10, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    packed = torch.cat([y, weight[..., None]], dim=-1)
    expected = tbptt.gradients(
        model, packed_weighted_mse, inputs, packed, k1, k2, resets=resets, mask=mask
    )
    actual = tbptt.gradients(
        model,
        weighted_mse,
        inputs,
        {"y": y, "weight": weight},
        k1,
        k2,
        resets=resets,
        mask=mask,
        recompute=checkpoint,
    )
    assert_gradients_equal(actual, expected)


def test_a_target_leaf_of_the_wrong_length_is_refused():
    model = make_model("elman")
    inputs, y, _, _ = make_data(6, 2)
    targets = {"y": y, "weight": torch.ones(5, 2)}
    with pytest.raises(tbptt.TBPTTError, match=r"targets shape \(5, 2\) does not start"):
        tbptt.gradients(model, weighted_mse, inputs, targets, 3)


def test_a_target_that_is_not_a_tensor_is_refused():
    model = make_model("elman")
    inputs, y, _, _ = make_data(6, 2)
    with pytest.raises(tbptt.TBPTTError, match="got float"):
        tbptt.gradients(model, weighted_mse, inputs, {"y": y, "weight": 1.0}, 3)
