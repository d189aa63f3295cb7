"""Data as parallel streams: the layout truncated BPTT needs.

A long sequence of N aligned (input, target) pairs is cut into B streams laid side by
side; consecutive batches continue the same streams, so the state a window leaves
is the right state for the next window::

    pairs:   0 1 2 3 4 5 6 7 8 9 10 11 12 13 (14)     N = 15, B = 3, L = N // B = 5
    stream 0:  0  1  2  3  4                        batch 0: steps [0, 2) of every stream
    stream 1:  5  6  7  8  9                        batch 1: steps [2, 4)
    stream 2: 10 11 12 13 14                        batch 2: step  [4, 5)

Pairs that do not fill a stream are left out and counted (``left_out``), or kept and
padded with a false mask (``remainder="pad"``). Independent sequences (documents,
episodes) are packed end to end with a reset at each start (:func:`pack_sequences`)
or served one per row, padded (:func:`pad_sequences`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tbptt.data.tokens import file_location, id_chunks, read_runs
from tbptt.errors import TBPTTError, quoted

logger = logging.getLogger(__name__)

ArrayLike = Any
"""A NumPy array (a memory map included) or a tensor, indexed along its first axis."""


@dataclass
class Batch:
    """``steps`` consecutive steps of B streams, time-major.

    ``inputs: (T, B, ...)``, ``targets: (T, B, ...)``, ``resets: (T, B)`` true where a
    stream starts a new sequence, ``mask: (T, B)`` true where a target is valid.
    """

    inputs: Tensor
    targets: Tensor
    resets: Tensor
    mask: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        """This batch on ``device``; from pinned memory the copy does not block."""
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self.fields()))

    def pin_memory(self) -> Batch:
        """This batch in page-locked memory, for asynchronous copies to a GPU."""
        return Batch(*(t.pin_memory() for t in self.fields()))

    def fields(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.inputs, self.targets, self.resets, self.mask

    def slices(self, steps: int | None) -> Iterator[Batch]:
        """This batch as consecutive pieces of at most ``steps`` steps (the last may be
        shorter); ``None``: the batch whole. Views, not copies."""
        length = self.inputs.shape[0]
        size = length if steps is None else steps
        if size < 1:
            raise TBPTTError(f"slices need at least 1 step each, got {steps}")
        for start in range(0, length, size):
            yield Batch(*(field[start : start + size] for field in self.fields()))


class Streams(torch.utils.data.IterableDataset):
    """N aligned pairs laid out as ``batch_size`` streams, served ``steps`` at a time.

    Chunks are gathered from the arrays on demand, so a memory-mapped corpus larger
    than RAM streams in constant memory (a memory map's steps are read with
    ``os.pread``, which keeps them out of the process's resident set).

    Args:
        inputs: ``(N, ...)`` inputs (token ids or features).
        targets: ``(N, ...)`` targets aligned with ``inputs`` (pair i is (inputs[i],
            targets[i])).
        batch_size: B, the number of streams.
        steps: steps per batch (usually k1).
        starts: ``(N,)`` bool, true where a new sequence starts (a reset).
        valid: ``(N,)`` bool, false for padding pairs (masked).
        remainder: ``"drop"`` leaves out the last ``N mod B`` pairs (counted in
            ``left_out``); ``"pad"`` keeps them and pads the streams, masked.
        random_offset: skip a random number of pairs in ``[0, steps)`` at the start of
            each epoch after the first, so window boundaries move between epochs.
        carry_state: carry each stream's state from the end of one epoch into the
            next; by default every epoch starts every stream afresh (a reset at step 0).
        seed: seeds the offsets (the offset of an epoch depends only on seed and epoch,
            so a resumed run draws the same ones).
        allow_short: accept streams shorter than one batch of ``steps`` (refused by
            default: such data is usually a mistake, e.g. the wrong file).
    """

    def __init__(
        self,
        inputs: ArrayLike,
        targets: ArrayLike,
        batch_size: int,
        steps: int,
        *,
        starts: ArrayLike | None = None,
        valid: ArrayLike | None = None,
        remainder: str = "drop",
        random_offset: bool = False,
        carry_state: bool = False,
        seed: int = 0,
        allow_short: bool = False,
    ) -> None:
        super().__init__()
        check_positive(batch_size=batch_size, steps=steps)
        inputs, targets = as_array(inputs, "inputs"), as_array(targets, "targets")
        starts = None if starts is None else as_array(starts, "starts")
        valid = None if valid is None else as_array(valid, "valid")
        if len(inputs) != len(targets):
            raise TBPTTError(
                f"inputs ({len(inputs)} steps) and targets ({len(targets)} steps) must be aligned"
            )
        for name, flags in (("starts", starts), ("valid", valid)):
            if flags is not None and len(flags) != len(inputs):
                raise TBPTTError(f"{name} has {len(flags)} entries, expected {len(inputs)}")
        if remainder not in ("drop", "pad"):
            raise TBPTTError(f"remainder must be 'drop' or 'pad', got {quoted(remainder)}")
        if len(inputs) < batch_size:
            raise TBPTTError(
                f"batch_size {batch_size} is larger than the data ({len(inputs)} steps): "
                f"each stream needs at least one step; lower batch_size"
            )
        self.inputs, self.targets, self.starts, self.valid = inputs, targets, starts, valid
        self.batch_size, self.steps, self.remainder = batch_size, steps, remainder
        self.random_offset, self.carry_state, self.seed = random_offset, carry_state, seed
        self.epoch = 0
        if not allow_short and self.stream_length(0) < steps:
            raise TBPTTError(
                f"{len(inputs)} steps make {batch_size} streams of {self.stream_length(0)} "
                f"steps, shorter than one window of {steps}: give more data, or lower "
                f"batch_size or steps"
            )
        if self.left_out(0):
            logger.info("%d steps left out of the stream layout", self.left_out(0))

    @classmethod
    def language_model(
        cls,
        tokens: ArrayLike,
        batch_size: int,
        steps: int,
        *,
        vocab_size: int | None = None,
        **kwargs: Any,
    ) -> Streams:
        """Next-token prediction over ``tokens: (N,)``: input token i, target token i+1.
        With ``vocab_size`` every id is checked to lie in ``[0, vocab_size)`` first (an
        id outside is refused, named, instead of an embedding's ``IndexError``)."""
        tokens = as_array(tokens, "tokens")
        if vocab_size is not None:
            check_ids(tokens, vocab_size)
        if len(tokens) < 2:
            raise TBPTTError(f"need at least 2 tokens for next-token prediction, got {len(tokens)}")
        return cls(tokens[:-1], tokens[1:], batch_size, steps, **kwargs)

    def offset(self, epoch: int) -> int:
        """Pairs skipped at the start of ``epoch``."""
        if not self.random_offset or epoch == 0:
            return 0
        rng = np.random.default_rng([self.seed, epoch])
        return int(rng.integers(0, min(self.steps, len(self.inputs) - self.batch_size + 1)))

    def stream_length(self, epoch: int = 0) -> int:
        """L, the steps in each stream in ``epoch``."""
        pairs = len(self.inputs) - self.offset(epoch)
        return -(-pairs // self.batch_size) if self.remainder == "pad" else pairs // self.batch_size

    def left_out(self, epoch: int = 0) -> int:
        """Pairs of ``epoch`` that no stream serves (the offset and the remainder)."""
        served = min(
            self.batch_size * self.stream_length(epoch), len(self.inputs) - self.offset(epoch)
        )
        return len(self.inputs) - served

    def __len__(self) -> int:
        """Batches in the first epoch."""
        return -(-self.stream_length(0) // self.steps)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch``, from batch ``start`` on (to resume mid-epoch)."""
        for positions, fresh in self.positions(epoch, start):
            yield self.gather(positions, fresh)

    def positions(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, bool]]:
        """Where the pairs of each batch of ``epoch`` lie, ``(T, B)``, from batch
        ``start`` on, and whether the batch starts every stream afresh."""
        length, offset = self.stream_length(epoch), self.offset(epoch)
        stream_starts = offset + length * np.arange(self.batch_size)
        for begin in range(start * self.steps, length, self.steps):
            steps = np.arange(begin, min(begin + self.steps, length))
            yield stream_starts[None, :] + steps[:, None], begin == 0 and not self.carry_state

    def gather(self, positions: np.ndarray, fresh: bool) -> Batch:
        """The batch of pairs at ``positions: (T, B)``; ``fresh`` resets step 0."""
        inside = positions < len(self.inputs)
        flat = np.minimum(positions, len(self.inputs) - 1).reshape(-1)
        shape = positions.shape

        def take(array: ArrayLike) -> Tensor:
            if file_location(array) is not None:  # each stream's steps are one run
                return as_tensor(read_runs(array, positions[0], shape[0]).T)
            rows = as_tensor(array[flat])
            return rows.reshape(shape + tuple(rows.shape[1:]))

        resets = (
            torch.zeros(shape, dtype=torch.bool)
            if self.starts is None
            else take(self.starts).bool()
        )
        resets[0] |= fresh
        mask = torch.from_numpy(inside)
        if self.valid is not None:
            mask &= take(self.valid).bool()
        return Batch(take(self.inputs), take(self.targets), resets, mask)

    def __iter__(self) -> Iterator[Batch]:
        """One epoch of batches; the next iteration serves the next epoch."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.batches(epoch)


def as_array(values: Any, name: str) -> ArrayLike:
    """``values`` as the streams index them: a tensor or NumPy array as it is (a memory
    map stays one), a list or tuple of numbers as a NumPy array; anything else, a
    ragged list or a scalar is refused."""
    if isinstance(values, list | tuple):
        try:
            values = np.asarray(values)
        except ValueError:
            raise TBPTTError(
                f"{name} is a ragged list (its items differ in shape); give a tensor or "
                "array of shape (N, ...)"
            ) from None
        if values.dtype.kind not in "biuf":
            raise TBPTTError(f"{name} holds {values.dtype} values; give numbers")
    if not isinstance(values, Tensor | np.ndarray):
        raise TBPTTError(
            f"{name} must be a tensor, a NumPy array or a list, got {type(values).__name__}"
        )
    if values.ndim == 0:
        raise TBPTTError(f"{name} is a single value; give a sequence of shape (N, ...)")
    return values


def check_ids(tokens: ArrayLike, vocab_size: int) -> None:
    """Refuse token ids outside ``[0, vocab_size)``, naming the first and its position
    (a memory map is read in chunks, in constant memory)."""
    check_positive(vocab_size=vocab_size)
    for start, ids in id_chunks(tokens):
        bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
        if len(bad):
            position = start + int(bad[0])
            raise TBPTTError(
                f"token id {int(ids[bad[0]])} at position {position} is outside the "
                f"vocabulary's {vocab_size} ids (0 to {vocab_size - 1}); give the "
                "vocabulary the ids were made with, or a larger vocab_size"
            )


def as_tensor(rows: ArrayLike) -> Tensor:
    """Gathered rows as a tensor; integer ids of any width become int64 for embeddings."""
    if isinstance(rows, Tensor):
        return rows.long() if not rows.is_floating_point() and rows.dtype != torch.bool else rows
    rows = np.asarray(rows)
    if np.issubdtype(rows.dtype, np.integer):
        rows = rows.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(rows))


def check_positive(**sizes: int) -> None:
    """Raise unless every named size is an int >= 1."""
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TBPTTError(f"{name} must be an integer >= 1, got {quoted(size)}")


Item = tuple[int | None, int]
"""One piece of a stream: (index of a sequence, or None for padding; its steps)."""


def pack_sequences(
    sequences: Sequence[tuple[ArrayLike, ArrayLike]],
    batch_size: int,
    steps: int,
    *,
    target_at: str = "every_step",
) -> Streams:
    """Independent sequences packed end to end into ``batch_size`` balanced streams.

    Each sequence starts with a reset; the longest sequences are placed first, each on
    the stream that is shortest so far, so streams end up about equally long; shorter
    streams are padded at the end (masked). ``sequences`` holds ``(inputs (T_i, ...),
    targets)`` pairs, ``targets (T_i, ...)`` with ``target_at="every_step"`` or one
    target per sequence, scored at its last step, with ``target_at="last_step"``.
    """
    check_sequences(sequences, batch_size, steps, target_at)
    if len(sequences) < batch_size:
        raise TBPTTError(
            f"batch_size {batch_size} is larger than the number of sequences "
            f"({len(sequences)}): every stream needs one; lower batch_size"
        )
    lengths = [len(inputs) for inputs, _ in sequences]
    plan: list[list[Item]] = [[] for _ in range(batch_size)]
    totals = [0] * batch_size
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        stream = totals.index(min(totals))
        plan[stream].append((index, lengths[index]))
        totals[stream] += lengths[index]
    for stream, total in enumerate(totals):
        plan[stream].append((None, max(totals) - total))
    return assemble(sequences, plan, steps, target_at)


def pad_sequences(
    sequences: Sequence[tuple[ArrayLike, ArrayLike]],
    batch_size: int,
    steps: int,
    *,
    target_at: str = "every_step",
) -> Streams:
    """One sequence per row: groups of ``batch_size`` sequences, in order, each group
    padded (masked) to a common length rounded up to a multiple of ``steps``, so every
    sequence starts a batch, with a reset. The last group may leave rows empty (all
    padding). Arguments as :func:`pack_sequences`.
    """
    check_sequences(sequences, batch_size, steps, target_at)
    lengths = [len(inputs) for inputs, _ in sequences]
    plan: list[list[Item]] = [[] for _ in range(batch_size)]
    for first in range(0, len(sequences), batch_size):
        group = range(first, min(first + batch_size, len(sequences)))
        padded = -(-max(lengths[i] for i in group) // steps) * steps
        for row in range(batch_size):
            index = first + row
            used = lengths[index] if index in group else 0
            plan[row] += [(index, used)] if used else []
            plan[row].append((None, padded - used))
    return assemble(sequences, plan, steps, target_at)


def check_sequences(
    sequences: Sequence[tuple[ArrayLike, ArrayLike]], batch_size: int, steps: int, target_at: str
) -> None:
    """Raise a one-line error for sequences that cannot be laid out."""
    check_positive(batch_size=batch_size, steps=steps)
    if target_at not in ("every_step", "last_step"):
        raise TBPTTError(f"target_at must be 'every_step' or 'last_step', got {quoted(target_at)}")
    if not sequences:
        raise TBPTTError("no sequences given: pass at least one (inputs, targets) pair")
    for number, (inputs, targets) in enumerate(sequences):
        if len(inputs) == 0:
            raise TBPTTError(f"sequence {number} is empty: drop it or give it at least one step")
        if target_at == "every_step" and len(targets) != len(inputs):
            raise TBPTTError(
                f"sequence {number} has {len(inputs)} inputs but {len(targets)} targets; "
                f"for one target per sequence use target_at='last_step'"
            )


def assemble(
    sequences: Sequence[tuple[ArrayLike, ArrayLike]],
    plan: list[list[Item]],
    steps: int,
    target_at: str,
) -> Streams:
    """Lay out ``plan[b]``, the pieces of stream b, as :class:`Streams`."""
    first_inputs, first_targets = (as_tensor(part) for part in sequences[0])
    pieces: dict[str, list[Tensor]] = {"inputs": [], "targets": [], "starts": [], "valid": []}
    for stream in plan:
        for index, length in stream:
            if index is None:
                inputs = first_inputs.new_zeros((length,) + first_inputs.shape[1:])
                step_target = target_shape(first_targets, target_at)
                targets = first_targets.new_zeros((length,) + step_target)
                starts = valid = torch.zeros(length, dtype=torch.bool)
            else:
                inputs, targets = (as_tensor(part) for part in sequences[index])
                starts = torch.arange(length) == 0
                valid = torch.ones(length, dtype=torch.bool)
                if target_at == "last_step":
                    targets = targets.expand((length,) + targets.shape)
                    valid = torch.arange(length) == length - 1
            for name, part in zip(pieces, (inputs, targets, starts, valid), strict=True):
                pieces[name].append(part)
    flat = {name: torch.cat(parts) for name, parts in pieces.items()}
    return Streams(
        flat["inputs"],
        flat["targets"],
        len(plan),
        steps,
        starts=flat["starts"],
        valid=flat["valid"],
        allow_short=True,
    )


def target_shape(targets: Tensor, target_at: str) -> tuple[int, ...]:
    """The shape of one step's target."""
    return tuple(targets.shape) if target_at == "last_step" else tuple(targets.shape[1:])
