"""Resets inside a fused RNN call: each stream's segments as separate sequences.

A reset at step i of stream b cuts that stream into segments. Every segment runs as
its own sequence in one call of ``nn.RNN/LSTM/GRU`` on a ``PackedSequence``: the first
segment of a stream starts from the carried state, the others from the initial state.
So no gradient crosses a reset, and the whole window stays one fused kernel call
instead of a Python loop over steps. Example, T = 5, B = 2, resets at (2, 0), (4, 0)::

    stream 0:  x00 x10 | x20 x30 | x40      segments: [x00 x10] [x20 x30] [x40]
    stream 1:  x01 x11   x21 x31   x41      segments: [x01 x11 x21 x31 x41]

The index arithmetic runs on the CPU (``resets`` is small); only two gathers touch
the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

RNNState = Tensor | tuple[Tensor, Tensor]
"""One tensor, or the LSTM's pair ``(h, c)``."""


@dataclass(frozen=True)
class Segments:
    """How a ``(T, B)`` grid of steps splits into segments, packed for cuDNN.

    ``packed_of_step[p]``: the row of packed data holding step p of the stream-major
    flattened grid (p = b * T + i); ``gather[r]``: the step feeding packed row r.
    """

    batch_sizes: Tensor
    sorted_indices: Tensor
    unsorted_indices: Tensor
    packed_of_step: Tensor
    gather: Tensor
    stream: Tensor
    from_carried: Tensor
    last: Tensor

    @staticmethod
    def from_resets(resets: Tensor) -> Segments:
        """Segments of the grid cut by ``resets: (T, B)`` bool (a reset at step 0
        makes the stream start from the initial state)."""
        device, resets = resets.device, resets.cpu()
        steps, batch = resets.shape
        starts = resets.clone()
        starts[0] = True
        starts = starts.t().reshape(-1)  # stream-major: p = b * T + i
        first_step = starts.nonzero().flatten()  # (N,) flat position of each segment start
        segment = starts.long().cumsum(0) - 1  # segment of each flat position
        lengths = torch.diff(first_step, append=torch.tensor([steps * batch]))
        step_in_segment = torch.arange(steps * batch) - first_step[segment]
        sorted_indices = torch.argsort(lengths, descending=True, stable=True)
        rank = torch.empty_like(sorted_indices)
        rank[sorted_indices] = torch.arange(len(lengths))
        batch_sizes = torch.bincount(lengths, minlength=int(lengths.max()) + 1)
        batch_sizes = batch_sizes.flip(0).cumsum(0).flip(0)[1:]  # segments longer than t
        offsets = batch_sizes.cumsum(0) - batch_sizes
        packed_of_step = offsets[step_in_segment] + rank[segment]
        gather = torch.empty_like(packed_of_step)
        gather[packed_of_step] = torch.arange(steps * batch)
        stream = first_step // steps
        from_carried = (first_step % steps == 0) & ~resets[0, stream]
        last = segment[torch.arange(batch) * steps + steps - 1]
        return Segments(
            batch_sizes,
            sorted_indices.to(device),
            rank.to(device),
            packed_of_step.to(device),
            gather.to(device),
            stream.to(device),
            from_carried.to(device),
            last.to(device),
        )

    def run(
        self,
        rnn: Callable[..., tuple[Tensor, RNNState]],
        inputs: Tensor,
        hidden: RNNState,
        chunk_steps: int | None,
    ) -> tuple[Tensor, RNNState]:
        """Run every segment of ``inputs: (T, B, F)`` through ``rnn`` from ``hidden``,
        ``(L, N, H)`` per segment (a pair for LSTMs); returns the outputs on the
        ``(T, B, H)`` grid and each segment's final state.

        The calls cover at most ``chunk_steps`` steps each, with the same outputs,
        states and gradients as one call: PyTorch's CPU kernel for packed sequences
        slices its input once per step, and each slice's backward writes a gradient
        the size of the whole input, quadratic in the steps of a call; chunks keep
        that linear. cuDNN has no such cost (``chunk_steps=None``: one call).
        """
        packed = self.pack(inputs)
        sizes = packed.batch_sizes
        if chunk_steps is None or len(sizes) <= chunk_steps:
            out, whole = rnn(packed, hidden)
            return self.unpack(out.data, inputs.shape[0]), whole
        parts = list(hidden) if isinstance(hidden, tuple) else [hidden]
        lanes = [part[:, self.sorted_indices] for part in parts]  # longest segment first
        offsets = [0, *sizes.cumsum(0).tolist()]
        outputs = []
        for first in range(0, len(sizes), chunk_steps):
            last = min(first + chunk_steps, len(sizes))
            active = int(sizes[first])  # the segments still running: a prefix of the lanes
            piece = PackedSequence(packed.data[offsets[first] : offsets[last]], sizes[first:last])
            entering = [lane[:, :active].contiguous() for lane in lanes]
            out, left = rnn(piece, tuple(entering) if len(parts) == 2 else entering[0])
            leaving = list(left) if isinstance(left, tuple) else [left]
            lanes = [
                torch.cat([new, lane[:, active:]], 1)
                for new, lane in zip(leaving, lanes, strict=True)
            ]
            outputs.append(out.data)
        final = [lane[:, self.unsorted_indices] for lane in lanes]
        return self.unpack(torch.cat(outputs), inputs.shape[0]), (
            (final[0], final[1]) if len(final) == 2 else final[0]
        )

    def pack(self, inputs: Tensor) -> PackedSequence:
        """``inputs: (T, B, F)`` as the packed sequence of all segments."""
        flat = inputs.transpose(0, 1).reshape(-1, inputs.shape[-1])
        return PackedSequence(
            flat[self.gather], self.batch_sizes, self.sorted_indices, self.unsorted_indices
        )

    def unpack(self, data: Tensor, steps: int) -> Tensor:
        """Packed outputs ``data: (T * B, H)`` back on the ``(T, B, H)`` grid."""
        flat = data[self.packed_of_step]
        return flat.view(-1, steps, flat.shape[-1]).transpose(0, 1)

    def start_state(self, carried: Tensor, initial: Tensor) -> Tensor:
        """Each segment's entering state ``(L, N, H)`` from per-stream ``(L, B, H)``
        states: the carried one for a stream's first segment, else the initial one."""
        choose = self.from_carried.view(1, -1, 1)
        return torch.where(choose, carried[:, self.stream], initial[:, self.stream])

    def end_state(self, final: Tensor) -> Tensor:
        """Each stream's state after its last segment, ``(L, B, H)``, from ``(L, N, H)``."""
        return final[:, self.last]
