"""Recurrent state as a nested structure of tensors.

A model's state is any nesting of tuples, lists and dicts whose leaves are tensors
(an Elman or GRU network: one tensor; an LSTM: the tuple ``(h, c)``). Every leaf is
**batch-first**: ``(B, ...)``, so that a reset of stream ``b`` replaces row ``b`` of
every leaf. These helpers walk such a structure; the engine never looks inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from tbptt.errors import TBPTTError

State = Any
"""A tensor, or a tuple, list or dict nesting of tensors, each ``(B, ...)``."""


def map_state(fn: Callable[..., Tensor], state: State, *others: State) -> State:
    """Apply ``fn`` leaf by leaf to ``state`` (and to ``others`` of the same structure)."""
    if isinstance(state, Tensor):
        return fn(state, *others)
    if isinstance(state, dict):
        return {key: map_state(fn, state[key], *(o[key] for o in others)) for key in state}
    if isinstance(state, (tuple, list)):
        mapped = [map_state(fn, *leaves) for leaves in zip(state, *others, strict=True)]
        return type(state)(mapped) if type(state) in (tuple, list) else type(state)(*mapped)
    raise TBPTTError(
        f"recurrent state and targets must be a tensor or a tuple, list or dict of "
        f"tensors, got {type(state).__name__}"
    )


def leaves(state: State) -> list[Tensor]:
    """The tensors of ``state`` in a fixed order."""
    if isinstance(state, Tensor):
        return [state]
    children = state.values() if isinstance(state, dict) else state
    return [leaf for child in children for leaf in leaves(child)]


def detach(state: State) -> State:
    """Cut ``state`` from the graph: the window boundary of truncated BPTT."""
    return None if state is None else map_state(Tensor.detach, state)


def zeros_like(state: State) -> State:
    """A state of zeros with the structure, shapes and dtypes of ``state``."""
    return map_state(torch.zeros_like, state)


def check_batch_size(state: State, batch_size: int) -> None:
    """Raise if any leaf of ``state`` is not batch-first with ``batch_size`` rows."""
    if state is None:
        return
    for leaf in leaves(state):
        if leaf.dim() == 0 or leaf.shape[0] != batch_size:
            raise TBPTTError(
                f"state tensor of shape {tuple(leaf.shape)} does not match batch size "
                f"{batch_size}: state tensors are batch-first (B, ...); a model wrapping "
                f"nn.LSTM/GRU/RNN must transpose their (num_layers, B, H) states"
            )


def initial_state(model: torch.nn.Module, like: State, batch_size: int) -> State:
    """The state a stream starts from: ``model.initial_state(...)`` if the model
    defines it, else zeros shaped like ``like`` (a state the model returned)."""
    make = getattr(model, "initial_state", None)
    if make is None:
        return zeros_like(like)
    first = leaves(like)[0]
    return make(batch_size, device=first.device, dtype=first.dtype)


def reset_streams(state: State, initial: State, resets: Tensor) -> State:
    """Replace the rows of ``state`` where ``resets`` (B,) is true by those of ``initial``.

    ``torch.where`` passes no gradient to the replaced rows, so no gradient crosses
    a reset.
    """

    def reset_leaf(leaf: Tensor, start: Tensor) -> Tensor:
        where = resets.reshape((-1,) + (1,) * (leaf.dim() - 1))
        return torch.where(where, start.to(leaf.dtype), leaf)

    return map_state(reset_leaf, state, initial)
