"""State helpers handle any nesting of tensors, batch-first."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from tbptt import TBPTTError
from tbptt.engine.state import (
    check_batch_size,
    detach,
    initial_state,
    leaves,
    map_state,
    reset_streams,
    zeros_like,
)

Pair = namedtuple("Pair", ["h", "c"])


def nested(batch=3):
    return {"lstm": Pair(torch.ones(batch, 2), torch.ones(batch, 2)), "extra": [torch.ones(batch)]}


def test_map_state_keeps_the_structure():
    doubled = map_state(lambda t: 2 * t, nested())
    assert isinstance(doubled["lstm"], Pair)
    assert isinstance(doubled["extra"], list)
    assert all(torch.equal(leaf, 2 * torch.ones_like(leaf)) for leaf in leaves(doubled))


def test_detach_cuts_every_leaf_from_the_graph():
    weight = torch.ones((), requires_grad=True)
    state = map_state(lambda t: t * weight, nested())
    assert all(leaf.requires_grad for leaf in leaves(state))
    assert not any(leaf.requires_grad for leaf in leaves(detach(state)))
    assert detach(None) is None


def test_reset_streams_replaces_only_the_flagged_rows_and_blocks_their_gradient():
    state = torch.arange(6.0).view(3, 2).requires_grad_()
    out = reset_streams(state, torch.full((3, 2), -1.0), torch.tensor([False, True, False]))
    assert out.tolist() == [[0.0, 1.0], [-1.0, -1.0], [4.0, 5.0]]
    out.sum().backward()
    assert state.grad.tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]


def test_reset_streams_walks_nested_states():
    state = nested()
    out = reset_streams(state, zeros_like(state), torch.tensor([True, False, False]))
    assert all(leaf[0].eq(0).all() and leaf[1:].eq(1).all() for leaf in leaves(out))


def test_a_state_that_is_not_batch_first_is_refused_with_a_hint():
    with pytest.raises(TBPTTError, match="batch-first"):
        check_batch_size((torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)), batch_size=3)
    check_batch_size(nested(3), batch_size=3)


def test_a_state_of_other_types_is_refused():
    with pytest.raises(TBPTTError, match="got str"):
        map_state(lambda t: t, {"h": "not a tensor"})


def test_map_state_refuses_states_of_different_lengths():
    with pytest.raises(ValueError, match="shorter"):  # zip(strict=True): no leaf dropped
        map_state(torch.add, (torch.ones(2), torch.ones(2)), (torch.ones(2),))


def test_a_reset_keeps_the_dtype_of_the_state():
    state = torch.ones(2, 3, dtype=torch.bfloat16)  # e.g. under autocast
    out = reset_streams(state, torch.zeros(2, 3), torch.tensor([True, False]))
    assert out.dtype == torch.bfloat16 and out[0].eq(0).all() and out[1].eq(1).all()


def test_the_initial_state_of_a_one_tensor_state_comes_from_the_model():
    class Model(torch.nn.Module):
        def initial_state(self, batch_size, device=None, dtype=None):
            return torch.full((batch_size, 2), 7.0, device=device, dtype=dtype)

    like = torch.zeros(3, 2, dtype=torch.float64)
    start = initial_state(Model(), like, 3)
    assert start.dtype == torch.float64 and start.eq(7.0).all()
    elsewhere = torch.zeros(3, 2, device="meta")  # a device other than the default
    assert initial_state(Model(), elsewhere, 3).device == elsewhere.device
