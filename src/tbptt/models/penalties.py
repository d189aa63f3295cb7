"""AWD-LSTM's activation penalties (Merity et al. 2018, section 4.6), summed over a window.

Two penalties on the last recurrent layer's outputs, added to a window's loss:

    AR   alpha * mean((m * h_t) ** 2)            the outputs the head reads (after
                                                 output dropout m): small activations
    TAR  beta * mean((h_t - h_{t-1}) ** 2)       the raw outputs: slowly changing ones

Each mean runs over the hidden units and over the (step, stream) pairs that count:

- AR counts the window's steps that carry loss and are not padding, the same
  elements as the window's loss (``docs/semantics.md``), so history steps run only
  for their state (k1 < k2) add nothing;
- TAR counts a difference at step t when step t counts for AR, step t - 1 ran in
  the same window, and the stream does not reset at t (a new sequence does not
  continue the last one). The first step of a window has no difference: the state
  entering it is a constant.

So with k1 = k2, no padding and no resets, AR is awd-lstm-lm's
``alpha * dropped_output.pow(2).mean()`` and TAR its ``beta * (output[1:] -
output[:-1]).pow(2).mean()`` over the window's T steps (T - 1 differences); a window
where nothing counts gives 0.

The engine may run a window in several calls (split where the next window starts,
at resets, in checkpointed segments), so the model records the outputs of every call
(:meth:`WindowPenalties.record`) and the penalty is computed once, over the whole
window, when the engine asks for it (:meth:`WindowPenalties.penalty`), from tensors
of the window's graph (a checkpointed segment's are recomputed in the backward pass
like the rest of it). Without windows (a loop of your own), every call starts
afresh, so ``penalty()`` after a call is AWD-LSTM's for that call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tbptt.errors import TBPTTError, check_non_negative


class WindowPenalties:
    """AR (``alpha``) and TAR (``beta``) over the calls of one window."""

    def __init__(self, alpha: float = 0.0, beta: float = 0.0) -> None:
        check_non_negative("activation_penalty", alpha)
        check_non_negative("temporal_penalty", beta)
        self.alpha, self.beta = alpha, beta
        self.windowed = False  # whether an engine opened a window (new_window)
        self.clear()

    def new_window(self) -> None:
        """Forget the recorded calls: the next ones belong to a new window."""
        self.windowed = True
        self.clear()

    def clear(self) -> None:
        """Drop the recorded outputs."""
        self.raw: list[Tensor] = []
        self.dropped: list[Tensor] = []
        self.resets: list[Tensor] = []

    def record(self, raw: Tensor, dropped: Tensor, resets: Tensor | None) -> None:
        """Keep one call's last-layer outputs: ``raw: (T, B, H)`` as the layer gave
        them, ``dropped: (T, B, H)`` as the head reads them, ``resets: (T, B)`` or
        ``None``. Records nothing with both penalties 0."""
        if not (self.alpha or self.beta):
            return
        if not self.windowed:  # no engine: every call is its own window
            self.clear()
        if resets is None:
            resets = torch.zeros(raw.shape[:2], dtype=torch.bool, device=raw.device)
        self.raw.append(raw)
        self.dropped.append(dropped)
        self.resets.append(resets)

    def penalty(self, counted: Tensor | None = None) -> Tensor | None:
        """``alpha * AR + beta * TAR`` over the recorded steps, a scalar; ``None`` if
        nothing was recorded (both penalties 0, no call in training mode, or the
        window's penalty already taken: it is taken once).

        ``counted: (L, B)`` bool marks the steps that carry loss and are not padding,
        for the window's last L recorded steps in order (the engine passes the
        window's steps; steps recorded before them, such as a memory probe's, are
        left out). ``None``: every recorded step counts.
        """
        if not self.raw:
            return None
        raw, dropped, resets = (torch.cat(parts) for parts in (self.raw, self.dropped, self.resets))
        self.clear()
        if counted is None:
            counted = torch.ones(raw.shape[:2], dtype=torch.bool, device=raw.device)
        steps = counted.shape[0]
        if steps > raw.shape[0] or tuple(counted.shape[1:]) != tuple(raw.shape[1:2]):
            raise TBPTTError(
                f"the penalty's counted steps {tuple(counted.shape)} do not match the "
                f"{tuple(raw.shape[:2])} steps the model ran in this window: pass (L, B) "
                "for the window's last L steps"
            )
        raw, dropped, resets = raw[-steps:], dropped[-steps:], resets[-steps:]
        total = raw.new_zeros(())
        if self.alpha:
            total = total + self.alpha * mean_over(dropped.pow(2).mean(-1), counted)
        if self.beta and steps > 1:
            changes = (raw[1:] - raw[:-1]).pow(2).mean(-1)
            total = total + self.beta * mean_over(changes, counted[1:] & ~resets[1:])
        return total


def mean_over(values: Tensor, counted: Tensor) -> Tensor:
    """The mean of ``values: (T, B)`` where ``counted``; 0 where nothing counts."""
    total = torch.where(counted, values, torch.zeros_like(values)).sum()
    return total / counted.sum().clamp(min=1)
