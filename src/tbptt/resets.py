"""Where a chunk splits at resets: shared by the engine and the built-in models.

A model that does not apply resets itself, and the fused built-in layers, run a chunk
in pieces between the steps where some stream resets (``semantics.md``, "Resets and
masks"); this module says where those pieces fall, once for both.
"""

from __future__ import annotations

from torch import Tensor


def reset_pieces(resets: Tensor) -> tuple[set[int], list[tuple[int, int]]]:
    """The steps where some stream resets in ``resets: (T, B)``, and the pieces
    ``[start, end)`` of the chunk between them, in order (a CPU-GPU sync point)."""
    reset_steps = set(resets.any(dim=1).nonzero().flatten().tolist())
    bounds = sorted({0, *reset_steps, resets.shape[0]})
    return reset_steps, list(zip(bounds[:-1], bounds[1:], strict=True))
