"""AWD-LSTM's dropouts (Merity et al. 2018) with one draw per TBPTT window.

Four regularisers, each a probability p of zeroing (survivors scaled by 1 / (1 - p)):

    embedding   whole words: rows of the embedding matrix, the same for every stream
    locked      one mask per stream and feature, shared by every step of the window
                (variational dropout, Gal & Ghahramani 2016): on the inputs, between
                layers and on the last layer's outputs
    weight      DropConnect on each layer's hidden-to-hidden matrix (Wan et al. 2013),
                the same dropped matrix for every stream and step

AWD-LSTM draws its masks once per forward call, which is once per window there. The
engine may call a model more than once per window: split where the next window
starts (k1 < k2) and run again in the backward pass (checkpointed windows). So the
masks here belong to a window, not to a call: :meth:`WindowMasks.new_window` (which
the engine calls before each window) starts a new set, drawn on first use from a
generator of its own, seeded by one draw from the global one. Every call of that
window then sees the same masks, and the global generator, which ``nn.Dropout``
uses, is not touched inside the window, so a recomputation replays it exactly.
Without ``new_window`` (a loop of your own), every call draws fresh masks, as
AWD-LSTM does.
"""

from __future__ import annotations

import torch
from torch import Tensor


class WindowMasks:
    """Dropout masks that stay the same for every call within one window."""

    def __init__(self) -> None:
        self.seed: int | None = None
        self.masks: dict[str, Tensor] = {}

    def new_window(self) -> None:
        """Forget the masks: the next call draws the new window's (one draw from the
        global generator seeds them)."""
        self.seed = int(torch.randint(0, 2**62, (1,)))
        self.masks = {}

    def get(self, name: str, shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
        """The window's mask ``name`` of ``shape``: 0 with probability ``p``, else
        ``1 / (1 - p)``, on ``like``'s device and dtype."""
        key = f"{name}{shape}"
        if self.seed is None:  # no window: a fresh mask per call
            return bernoulli(shape, p, like, None)
        if key not in self.masks:
            generator = torch.Generator(like.device).manual_seed(self.seed + len(self.masks))
            self.masks[key] = bernoulli(shape, p, like, generator)
        return self.masks[key]


def bernoulli(
    shape: tuple[int, ...], p: float, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Keep each element with probability ``1 - p``, scaled by ``1 / (1 - p)``."""
    keep = torch.empty(shape, device=like.device, dtype=like.dtype)
    return keep.bernoulli_(1.0 - p, generator=generator) / (1.0 - p)


def locked(masks: WindowMasks, name: str, features: Tensor, p: float, training: bool) -> Tensor:
    """``features: (T, B, F)`` times one ``(1, B, F)`` mask for every step."""
    if not training or p == 0.0:
        return features
    return features * masks.get(name, (1, *features.shape[1:]), p, features)


def embed(
    masks: WindowMasks,
    embedding: torch.nn.Embedding,
    ids: Tensor,
    p: float,
    training: bool,
) -> Tensor:
    """``ids: (T, B)`` through ``embedding`` with whole rows of its matrix dropped."""
    weight = embedding.weight
    if training and p > 0.0:
        weight = weight * masks.get("embedding", (weight.shape[0], 1), p, weight)
    return torch.nn.functional.embedding(ids, weight, embedding.padding_idx)


def drop_weights(masks: WindowMasks, weights: dict[str, Tensor], p: float) -> dict[str, Tensor]:
    """``weights`` with every hidden-to-hidden matrix (``weight_hh_l*``) DropConnected."""
    if p == 0.0:
        return weights
    dropped = dict(weights)
    for name, weight in weights.items():
        if name.startswith("weight_hh"):
            dropped[name] = weight * masks.get(name, tuple(weight.shape), p, weight)
    return dropped
