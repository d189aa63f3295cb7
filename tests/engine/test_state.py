"""State helpers handle any nesting of tensors, batch-first."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from tbptt import TBPTTError
from tbptt.engine.state import (
    check_batch_size,
    detach,
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
