"""The BPTT engine: exact full and truncated BPTT for any recurrent model.

A model follows the protocol ``forward(inputs: (T, B, ...), state) -> (outputs: (T, B,
...), state)`` with ``state=None`` meaning its initial state (see ``tbptt.state``). A
model whose ``forward`` also takes a ``resets: (T, B)`` keyword applies resets itself
(the built-in models do, in one fused call); for any other model the engine splits
the sequence at the steps where some stream resets and resets those streams' state
between the pieces.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tbptt import state as states
from tbptt.errors import TBPTTError
from tbptt.state import State
from tbptt.windows import Span, check_truncation, spans

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, targets) -> (T, B)`` per-element losses."""


def accepts_resets(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes a ``resets`` keyword and applies resets itself."""
    return "resets" in inspect.signature(model.forward).parameters


def unroll(
    model: nn.Module, inputs: Tensor, state: State = None, resets: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``model`` over ``inputs: (T, B, ...)`` from ``state``, applying ``resets: (T, B)``.

    Returns ``outputs: (T, B, ...)`` and the state after the last step.
    """
    if resets is None or not bool(resets.any()):  # a CPU-GPU sync point
        return model(inputs, state)
    if accepts_resets(model):
        return model(inputs, state, resets=resets)
    reset_steps = set(resets.any(dim=1).nonzero().flatten().tolist())  # a CPU-GPU sync
    bounds = sorted({0, *reset_steps, inputs.shape[0]})
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if state is not None and start in reset_steps:
            initial = states.initial_state(model, state, inputs.shape[1])
            state = states.reset_streams(state, initial, resets[start])
        piece, state = model(inputs[start:end], state)
        outputs.append(piece)
    return torch.cat(outputs), state


def masked_mean(losses: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The mean of ``losses: (T, B)`` over valid elements, and their count.

    An all-padding window gives a zero loss (and zero gradient), not NaN. Masked
    elements must still hold values the loss function accepts: a NaN target there
    would give NaN gradients through the loss function itself.
    """
    if mask is None:
        return losses.mean(), torch.tensor(losses.numel(), device=losses.device)
    count = mask.sum()
    total = torch.where(mask, losses, torch.zeros_like(losses)).sum()
    return total / count.clamp(min=1), count


@dataclass
class Window:
    """One window of TBPTT: its loss (with graph), outputs and position in the chunk.

    ``loss`` is the mean over the ``count`` valid elements of steps
    ``[loss_start, end)``; ``outputs`` are the model's outputs for those steps.
    """

    loss: Tensor
    count: Tensor
    outputs: Tensor
    loss_start: int
    end: int


class Runner:
    """Stateful TBPTT(k1, k2) over streams that arrive in consecutive chunks.

    Each call to :meth:`windows` continues the streams where the last chunk stopped:
    the state leaving one window enters the next detached, and when k1 < k2 the
    runner keeps the last ``k2 - k1`` steps of inputs (and resets) so the first
    windows of the next chunk see their full history. Windows are laid out from the
    start of each chunk (chunks of a multiple of k1 steps give the windows of the
    whole stream). ``k1=None`` makes each chunk one window of full BPTT.

    Usage::

        runner = Runner(model, tbptt.losses.cross_entropy, k1=35, k2=70)
        for inputs, targets in chunks:            # (T, B, ...), (T, B, ...)
            for window in runner.windows(inputs, targets):
                window.loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        k1: int | None,
        k2: int | None = None,
        *,
        state: State = None,
    ) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.k1, self.k2 = check_truncation(k1, k2)
        self.overlap = 0 if self.k1 is None or self.k2 is None else self.k2 - self.k1
        self.state = states.detach(state)
        self.history: tuple[Tensor, Tensor | None] | None = None
        """The last ``k2 - k1`` steps' inputs and resets, run again by the next chunk."""

    def reset(self, state: State = None) -> None:
        """Start every stream afresh from ``state`` (the initial state by default)."""
        self.state = states.detach(state)
        self.history = None

    def windows(
        self,
        inputs: Tensor,
        targets: Tensor,
        *,
        resets: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Iterator[Window]:
        """Yield the windows of the chunk ``inputs: (T, B, ...)``, ``targets: (T, B, ...)``.

        ``resets: (T, B)`` marks sequence starts, ``mask: (T, B)`` valid elements. Each
        window is yielded before its backward pass: call ``window.loss.backward()``
        (and step the optimizer) before asking for the next.
        """
        resets, mask = check_chunk(inputs, targets, resets, mask)
        states.check_batch_size(self.state, inputs.shape[1])
        history = 0
        if self.history is not None:
            past_inputs, past_resets = self.history
            history = past_inputs.shape[0]
            resets = join_resets(past_resets, resets, past_inputs, inputs)
            inputs = torch.cat([past_inputs, inputs])
        for span in spans(inputs.shape[0], self.k1, self.k2, history=history):
            yield self._window(span, inputs, targets, resets, mask, history)
        keep = max(inputs.shape[0] - self.overlap, 0)
        past = None if resets is None else resets[keep:]
        self.history = (inputs[keep:], past) if self.overlap else None

    def _window(
        self,
        span: Span,
        inputs: Tensor,
        targets: Tensor,
        resets: Tensor | None,
        mask: Tensor | None,
        history: int,
    ) -> Window:
        """Run one window from the carried state and compute its loss.

        The run is split where the next window starts, to carry the state entering
        that step (detached) without running any step twice more than TBPTT does.
        """
        next_start = max(span.end - self.overlap, span.start)
        outputs, state = [], self.state
        for start, end in ((span.start, next_start), (next_start, span.end)):
            if start < end:
                piece_resets = None if resets is None else resets[start:end]
                piece, state = unroll(self.model, inputs[start:end], state, piece_resets)
                outputs.append(piece)
            if end == next_start:
                self.state = states.detach(state)
        ran = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        history_steps = span.loss_start - span.start  # a slice, even [0:], costs a backward
        loss_outputs = ran[history_steps:] if history_steps else ran
        loss_steps = slice(span.loss_start - history, span.end - history)
        losses = self.loss_fn(loss_outputs, targets[loss_steps])
        window_mask = None if mask is None else mask[loss_steps]
        check_losses(losses, targets[loss_steps])
        loss, count = masked_mean(losses, window_mask)
        return Window(loss, count, loss_outputs, loss_steps.start, loss_steps.stop)


def join_resets(
    past: Tensor | None, resets: Tensor | None, past_inputs: Tensor, inputs: Tensor
) -> Tensor | None:
    """The resets of the history steps followed by the chunk's (``None``: no resets)."""
    if past is None and resets is None:
        return None

    def flags(given: Tensor | None, like: Tensor) -> Tensor:
        if given is not None:
            return given
        return torch.zeros(like.shape[:2], dtype=torch.bool, device=like.device)

    return torch.cat([flags(past, past_inputs), flags(resets, inputs)])


def check_chunk(
    inputs: Tensor, targets: Tensor, resets: Tensor | None, mask: Tensor | None
) -> tuple[Tensor | None, Tensor | None]:
    """Validate a chunk's shapes; returns ``resets`` and ``mask`` as bool tensors on
    the inputs' device (``None`` where not given)."""
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise TBPTTError(
            f"inputs must be time-major (T, B, ...) with T >= 1, got shape {tuple(inputs.shape)}"
        )
    steps = tuple(inputs.shape[:2])
    if tuple(targets.shape[:2]) != steps:
        raise TBPTTError(
            f"targets shape {tuple(targets.shape)} does not start with the inputs' (T, B) = "
            f"{steps}: both are time-major"
        )
    for name, flags in (("resets", resets), ("mask", mask)):
        if flags is not None and tuple(flags.shape) != steps:
            raise TBPTTError(
                f"{name} must have shape (T, B) = {steps} like the inputs, got {tuple(flags.shape)}"
            )

    def as_flags(flags: Tensor | None) -> Tensor | None:
        return None if flags is None else flags.to(device=inputs.device, dtype=torch.bool)

    return as_flags(resets), as_flags(mask)


def check_losses(losses: Tensor, targets: Tensor) -> None:
    """Raise unless ``loss_fn`` returned one loss per element, ``(T, B)``."""
    if tuple(losses.shape) != tuple(targets.shape[:2]):
        raise TBPTTError(
            f"loss_fn returned shape {tuple(losses.shape)}, expected per-element losses "
            f"(T, B) = {tuple(targets.shape[:2])}: use reduction='none' and do not "
            f"average over time or batch"
        )


def gradients(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn,
    k1: int | None,
    k2: int | None = None,
    *,
    state: State = None,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
) -> list[dict[str, Tensor]]:
    """The gradient of every TBPTT(k1, k2) window at fixed parameters, in window order.

    Args:
        model: follows the protocol ``forward(x, state) -> (y, state)``.
        inputs: ``(T, B, ...)``; targets: ``(T, B, ...)``.
        loss_fn: ``loss_fn(outputs, targets) -> (T, B)`` per-element losses.
        k1, k2: the truncation (``k2=None``: k2 = k1; ``k1=None``: full BPTT).
        state: the state entering step 0 (``None``: the model's initial state).
        resets: ``(T, B)`` bool, true where a stream starts a new sequence.
        mask: ``(T, B)`` bool, false for padding.

    Returns:
        One dict per window mapping each trainable parameter's name (as in
        ``model.named_parameters()``) to ``dL_n/dθ``.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    runner = Runner(model, loss_fn, k1, k2, state=state)
    result = []
    for window in runner.windows(inputs, targets, resets=resets, mask=mask):
        grads = torch.autograd.grad(window.loss, [p for _, p in named], allow_unused=True)
        result.append(
            {
                name: torch.zeros_like(p) if grad is None else grad
                for (name, p), grad in zip(named, grads, strict=True)
            }
        )
    return result
