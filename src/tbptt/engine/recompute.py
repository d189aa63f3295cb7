"""Memory-efficient exact BPTT: keep the state at segment boundaries, recompute the rest.

Run plainly, a window of L steps keeps every step's activations for its backward
pass, so memory grows as L. Checkpointed, the window runs as segments of S steps,
each under ``torch.utils.checkpoint``: the forward pass keeps only the state entering
each segment and the segment's loss sum; the backward pass runs each segment again
(with the same dropout masks) to get its activations back. Memory falls to about
``(L / S) * state + S * step`` for one extra forward pass, and the gradient is the
same as the plain one::

    steps:   s ......... s+S ......... s+2S ...... end
    kept:    h_s          h_{s+S}       h_{s+2S}           one state per boundary
    backward:            <- segment 3 recomputed, then 2, then 1

Each segment computes its masked loss SUM inside the checkpointed function, so
neither its activations nor its ``(S, B, ...)`` outputs outlive it; the engine
divides the total by the window's valid count. ``docs/memory.md`` has the figures.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from tbptt.engine import state as states
from tbptt.engine.state import State
from tbptt.errors import TBPTTError

SegmentFn = Callable[[Tensor, int, State], tuple[Tensor, State]]
"""``run(inputs: (S, B, ...), start, state) -> (loss_sum, state)`` for steps
``[start, start + S)`` of a window."""

PROBE_STEPS = 16
"""Steps run to measure the activation bytes of one step for a memory budget."""


@dataclass(frozen=True)
class Checkpointing:
    """How a window is cut into segments: ``segment`` steps each, or (``None``) about
    ``sqrt(L)`` steps for a window of L, or the longest that fits ``memory_budget``
    bytes."""

    segment: int | None = None
    memory_budget: int | None = None

    def segment_steps(self, steps: int, probe: Callable[[], tuple[float, int]]) -> int:
        """The segment length for a window of ``steps`` steps (``>= steps``: run it
        plainly). ``probe()`` gives the bytes per step and of one state."""
        if self.segment is not None:
            return self.segment
        if self.memory_budget is None:
            return math.isqrt(steps - 1) + 1  # ceil(sqrt(steps))
        step_bytes, state_bytes = probe()
        return budget_segment(steps, self.memory_budget, step_bytes, state_bytes)


def renamed(recompute: bool | int, checkpoint: bool | int | None, where: str) -> bool | int:
    """``recompute``, or what was given under its old name ``checkpoint`` (with a
    ``DeprecationWarning``: "checkpoint" now names saved files only)."""
    if checkpoint is None:
        return recompute
    warnings.warn(
        f"{where}(checkpoint=...) is deprecated: pass recompute=..., the same values",
        DeprecationWarning,
        stacklevel=3,
    )
    return checkpoint


def check_recompute(recompute: bool | int, memory_budget: int | None) -> Checkpointing | None:
    """Validate ``recompute`` (``False``, ``True`` or a segment length in steps) and
    ``memory_budget`` (bytes, implies recomputation); ``None`` means no recomputation."""
    if memory_budget is not None and (
        isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1
    ):
        raise TBPTTError(f"memory_budget must be a number of bytes >= 1, got {memory_budget!r}")
    if isinstance(recompute, bool):
        if not recompute and memory_budget is None:
            return None
        return Checkpointing(memory_budget=memory_budget)
    if not isinstance(recompute, int) or recompute < 1:
        raise TBPTTError(
            f"recompute must be True, False or a segment length in steps >= 1, got {recompute!r}"
        )
    if memory_budget is not None:
        raise TBPTTError(
            "give recompute=<steps> or memory_budget, not both: the budget picks the steps"
        )
    return Checkpointing(segment=recompute)


def budget_segment(steps: int, budget: int, step_bytes: float, state_bytes: int) -> int:
    """The longest segment S whose ``ceil(steps / S) * state_bytes + S * step_bytes``
    fits ``budget``; raises if none does."""
    best, least = 0, math.inf
    for segment in range(steps, 0, -1):
        needed = -(-steps // segment) * state_bytes + segment * step_bytes
        if needed <= budget:
            return segment
        if needed < least:
            best, least = segment, needed
    raise TBPTTError(
        f"memory_budget={budget} bytes is below the {math.ceil(least)} that a window of "
        f"{steps} steps needs at best ({best}-step segments, {step_bytes:.0f} bytes a step, "
        f"{state_bytes} a state): raise the budget or shorten the window (k1, k2)"
    )


def boundaries(start: int, keep_at: int, end: int, segment: int) -> list[int]:
    """Segment bounds over ``[start, end)``, every ``segment`` steps from ``start``
    and from ``keep_at`` (where the next window's state is taken)."""
    cuts = {*range(start, keep_at, segment), *range(keep_at, end, segment), end}
    return sorted(cuts)


def run_segments(
    run: SegmentFn, inputs: Tensor, bounds: list[int], state: State, keep_at: int
) -> tuple[Tensor, State]:
    """The loss sum over the segments ``bounds`` of ``inputs: (T, B, ...)`` (indexed
    by step) from ``state``, each checkpointed; and the state entering ``keep_at``,
    detached.

    ``preserve_rng_state`` replays each segment with the random state of its first
    run, so dropout draws the same masks in the backward pass; the inputs piece is
    passed as an argument so that the state of its device's generator is kept too.
    """
    total: Tensor | None = None
    kept = states.detach(state) if keep_at == bounds[0] else None
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        loss, state = torch_checkpoint(
            run, inputs[start:end], start, state, use_reentrant=False, preserve_rng_state=True
        )
        total = loss if total is None else total + loss
        if end == keep_at:
            kept = states.detach(state)
    if total is None:
        raise TBPTTError(f"segment bounds {bounds} hold no segment: give at least two")
    return total, kept


def probe(
    run: SegmentFn, inputs: Tensor, start: int, state: State, exclude: Iterable[Tensor]
) -> tuple[float, int]:
    """Bytes autograd saves per step (not counting ``exclude``, the parameters), and
    bytes of one state, measured by running ``run`` on up to ``PROBE_STEPS`` steps
    from ``start`` (the random state is left as it was).

    Saved views are counted by the bytes they span, not their whole storage: a
    piece of the chunk's inputs saved by an embedding costs the piece, not the chunk.
    """
    piece = inputs[start : start + PROBE_STEPS]
    parameters = {tensor.untyped_storage().data_ptr() for tensor in exclude}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    saved = [0]

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), int(tensor.storage_offset()), tuple(tensor.shape))
        if key not in seen and key[0] not in parameters:
            seen.add(key)
            saved[0] += min(storage.nbytes(), tensor.numel() * tensor.element_size())
        return tensor

    devices = [] if piece.device.type == "cpu" else [piece.device]
    with (
        torch.random.fork_rng(devices=devices, device_type=piece.device.type),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
        torch.enable_grad(),
    ):
        _, final = run(piece, start, state)
    state_bytes = sum(leaf.numel() * leaf.element_size() for leaf in states.leaves(final))
    return saved[0] / piece.shape[0], state_bytes
