"""The BPTT engine: exact full and truncated BPTT for any recurrent model.

A model follows the protocol ``forward(inputs: (T, B, ...), state) -> (outputs: (T, B,
...), state)`` with ``state=None`` meaning its initial state (see ``tbptt.engine.state``). A
model whose ``forward`` also takes a ``resets: (T, B)`` keyword applies resets itself
(the built-in models do, in one fused call); for any other model the engine splits
the sequence at the steps where some stream resets and resets those streams' state
between the pieces.

Targets may be one tensor ``(T, B, ...)`` or any tuple, list or dict nesting of
them (a loss that needs several, such as PPO's actions, advantages and old
log-probabilities): every leaf is sliced along time like the inputs.

With ``burn_in=m`` the first m steps of every chunk run without gradient and
without loss, only to refresh a stored state (R2D2's replay); the windows are laid
out over the steps after them.

With ``checkpoint=`` a window keeps only the states at segment boundaries and
recomputes the rest in the backward pass (``tbptt.engine.recompute``): the same
gradient in a fraction of the memory.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.engine import recompute
from tbptt.engine import state as states
from tbptt.engine.state import State
from tbptt.engine.windows import RandomTruncation, Span, Stride, check_truncation, overlap, spans
from tbptt.errors import TBPTTError

Targets = Any
"""A tensor ``(T, B, ...)``, or a tuple, list or dict nesting of tensors that each
start with ``(T, B)``: sliced along time like the inputs, passed whole to the loss."""

LossFn = Callable[[Tensor, Targets], Tensor]
"""``loss_fn(outputs, targets) -> (T, B)`` per-element losses."""


def time_slice(targets: Targets, steps: slice) -> Targets:
    """Steps ``steps`` of every leaf of ``targets`` (each time-major)."""
    return states.map_state(lambda leaf: leaf[steps], targets)


def accepts_resets(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes a ``resets`` keyword and applies resets itself."""
    return "resets" in inspect.signature(model.forward).parameters


def unroll(
    model: nn.Module, inputs: Tensor, state: State = None, resets: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``model`` over ``inputs: (T, B, ...)`` from ``state``, applying ``resets: (T, B)``.

    Returns ``outputs: (T, B, ...)`` and the state after the last step; raises
    ``TBPTTError`` if the model returns anything else (checked on every call, so a
    model whose state is not batch-first is caught on its first chunk).
    """
    if resets is None or not bool(resets.any()):  # a CPU-GPU sync point
        return checked(model(inputs, state), inputs)
    if accepts_resets(model):
        return checked(model(inputs, state, resets=resets), inputs)
    reset_steps = set(resets.any(dim=1).nonzero().flatten().tolist())  # a CPU-GPU sync
    bounds = sorted({0, *reset_steps, inputs.shape[0]})
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if state is not None and start in reset_steps:
            initial = states.initial_state(model, state, inputs.shape[1])
            state = states.reset_streams(state, initial, resets[start])
        piece, state = checked(model(inputs[start:end], state), inputs[start:end])
        outputs.append(piece)
    return torch.cat(outputs), state


def checked(returned: Any, inputs: Tensor) -> tuple[Tensor, State]:
    """A model's ``(outputs, state)`` for ``inputs: (T, B, ...)``, checked: outputs
    ``(T, B, ...)``, every state tensor batch-first ``(B, ...)``."""
    if not (isinstance(returned, tuple) and len(returned) == 2):
        got = (
            f"a tuple of {len(returned)}"
            if isinstance(returned, tuple)
            else type(returned).__name__
        )
        raise TBPTTError(
            f"the model returned {got}; a tbptt model's forward(inputs, state) returns "
            "(outputs, state): outputs (T, B, ...) and the state after the last step"
        )
    outputs, state = returned
    steps = tuple(inputs.shape[:2])
    if not isinstance(outputs, Tensor) or tuple(outputs.shape[:2]) != steps:
        shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise TBPTTError(
            f"the model's outputs have shape {shape} for inputs of shape "
            f"{tuple(inputs.shape)}: outputs must be time-major, (T, B, ...) with (T, B) = {steps}"
        )
    states.check_batch_size(state, steps[1])
    return outputs, state


def masked_mean(losses: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The mean of ``losses: (T, B)`` over valid elements, and their count.

    An all-padding window gives a zero loss (and zero gradient), not NaN. Masked
    elements must still hold values the loss function accepts: a NaN target there
    would give NaN gradients through the loss function itself.
    """
    if mask is None:
        return losses.mean(), torch.tensor(losses.numel(), device=losses.device)
    total, count = masked_sum(losses, mask)
    return total / count.clamp(min=1), count


def masked_sum(losses: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The sum of ``losses: (T, B)`` over valid elements, and their count."""
    if mask is None:
        return losses.sum(), torch.tensor(losses.numel(), device=losses.device)
    return torch.where(mask, losses, torch.zeros_like(losses)).sum(), mask.sum()


@dataclass
class Window:
    """One window of TBPTT: its loss (with graph), outputs and position in the chunk.

    ``loss`` is the mean over the ``count`` valid elements of steps
    ``[loss_start, end)``; ``outputs`` are the model's outputs for those steps, or
    ``None`` for a checkpointed window (they are not kept: that is the point).
    ``lr_scale`` is the factor for this update's learning rate: loss steps over the
    mean k1 with :class:`~tbptt.engine.windows.RandomTruncation`, else 1.0.
    With a model that has a ``window_penalty`` (AWD-LSTM's AR and TAR), ``loss``
    is that mean plus the penalty and ``data_loss`` the mean alone, the loss to
    report; without one, ``data_loss`` is ``None`` and ``loss`` is the mean.
    """

    loss: Tensor
    count: Tensor
    outputs: Tensor | None
    loss_start: int
    end: int
    lr_scale: float = 1.0
    data_loss: Tensor | None = None

    @property
    def reported_loss(self) -> Tensor:
        """The loss function's masked mean, without the model's penalty."""
        return self.loss if self.data_loss is None else self.data_loss

    @property
    def k1(self) -> int:
        """The window's stride: its loss steps (drawn per window with random k1)."""
        return self.end - self.loss_start


@dataclass(frozen=True)
class Chunk:
    """A chunk as its windows see it: ``inputs: (H + T, B, ...)`` and ``resets:
    (H + T, B)`` start with the ``history`` (H) steps carried from the last chunk;
    ``targets: (T, B, ...)`` and ``mask: (T, B)`` do not. After a burn-in of m steps
    (then H = 0), ``inputs`` and ``resets`` have lost those steps, already run, and
    ``targets`` and ``mask`` keep them."""

    inputs: Tensor
    targets: Targets
    resets: Tensor | None
    mask: Tensor | None
    history: int
    burn_in: int = 0

    def loss_steps(self, start: int, end: int) -> slice:
        """Steps ``[start, end)`` of ``inputs`` as a slice of ``targets``."""
        shift = self.burn_in - self.history
        return slice(start + shift, end + shift)


class Runner:
    """Stateful TBPTT(k1, k2) over streams that arrive in consecutive chunks.

    Each call to :meth:`windows` continues the streams where the last chunk stopped:
    the state leaving one window enters the next detached, and when k1 < k2 the
    runner keeps the last ``k2 - k1`` steps of inputs (and resets) so the first
    windows of the next chunk see their full history. Windows are laid out from the
    start of each chunk (chunks of a multiple of k1 steps give the windows of the
    whole stream). ``k1=None`` makes each chunk one window of full BPTT; a
    :class:`~tbptt.engine.windows.RandomTruncation` draws each window's k1.

    Before each window the runner calls the model's ``new_window()`` if it has one:
    a model that draws something once per window (AWD-LSTM's dropout masks in the
    built-in models) draws it there, and every call of that window, including the
    recomputation of checkpointed segments, sees the same draw. After the window's
    calls it adds the model's ``window_penalty(counted)``, if it has one, to the
    window's loss (AWD-LSTM's AR and TAR; :meth:`_penalised`).

    ``burn_in=m`` runs the first m steps of every chunk from the carried state
    without gradient and without loss, only to refresh that state (a stored,
    possibly stale state: R2D2's replay, set with :meth:`reset`); the windows are
    laid out over steps ``[m, T)`` with step m as their step 0, so no history is
    carried from the last chunk, and the state carried out is the one at the chunk's
    end. Resets inside the burn-in apply as anywhere else.

    ``checkpoint=True`` runs each window as segments of about ``sqrt(L)`` steps for
    a window of L steps, keeping only the states between them and recomputing the
    rest in the backward pass (the same gradient; ``docs/memory.md``);
    ``checkpoint=S`` uses segments of S steps; ``memory_budget=bytes`` picks the
    longest segments whose activations and boundary states fit the budget.

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
        k1: Stride,
        k2: int | None = None,
        *,
        state: State = None,
        burn_in: int = 0,
        checkpoint: bool | int = False,
        memory_budget: int | None = None,
    ) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.k1, self.k2 = check_truncation(k1, k2)
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
            raise TBPTTError(
                f"burn_in must be an int >= 0 (steps without gradient), got {burn_in!r}"
            )
        self.burn_in = burn_in
        self.overlap = overlap(self.k1, self.k2)
        self.checkpointing = recompute.check_checkpoint(checkpoint, memory_budget)
        self._probed: dict[tuple[object, ...], tuple[float, int]] = {}
        self.state = states.detach(state)
        self.history: tuple[Tensor, Tensor | None] | None = None
        """The last ``k2 - k1`` steps' inputs and resets, run again by the next chunk."""

    def reset(self, state: State = None) -> None:
        """Start every stream afresh from ``state`` (the initial state by default)."""
        self.state = states.detach(state)
        self.history = None

    def set_k2(self, k2: int) -> None:
        """Let the next windows flow back ``k2`` steps, k1 unchanged. The history kept
        for the next chunk grows from the end of this one; until it has ``k2 - k1``
        steps, a chunk's first windows start from the carried state (a constant)."""
        self.k1, self.k2 = check_truncation(self.k1, k2)
        self.overlap = overlap(self.k1, self.k2)

    def windows(
        self,
        inputs: Tensor,
        targets: Targets,
        *,
        resets: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Iterator[Window]:
        """Yield the windows of the chunk ``inputs: (T, B, ...)``, ``targets: (T, B, ...)``
        (or a nesting of such tensors, see :data:`Targets`).

        ``resets: (T, B)`` marks sequence starts, ``mask: (T, B)`` valid elements. Each
        window is yielded before its backward pass: call ``window.loss.backward()``
        (and step the optimizer) before asking for the next. With a burn-in, the
        windows' ``loss_start`` and ``end`` count the burn-in steps.
        """
        resets, mask = check_chunk(inputs, targets, resets, mask)
        states.check_batch_size(self.state, inputs.shape[1])
        if self.burn_in:
            inputs, resets = self._burn_in(inputs, resets)
        history = 0
        if self.history is not None:
            past_inputs, past_resets = self.history
            history = past_inputs.shape[0]
            resets = join_resets(past_resets, resets, past_inputs, inputs)
            inputs = torch.cat([past_inputs, inputs])
        chunk = Chunk(inputs, targets, resets, mask, history, self.burn_in)
        for span in spans(inputs.shape[0], self.k1, self.k2, history=history):
            yield self._penalised(self._window(span, chunk), span, chunk)
        keep = max(inputs.shape[0] - self.overlap, 0)
        past = None if resets is None else resets[keep:]
        self.history = (inputs[keep:], past) if self.overlap and not self.burn_in else None

    def _burn_in(self, inputs: Tensor, resets: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Run the burn-in steps without gradient from the carried state, which they
        refresh; returns the chunk's inputs and resets after them."""
        steps = self.burn_in
        if steps >= inputs.shape[0]:
            raise TBPTTError(
                f"burn_in={steps} leaves no step to learn from in a chunk of "
                f"T={inputs.shape[0]} steps: pass chunks longer than the burn-in, or lower it"
            )
        self.history = None  # the burn-in steps take the place of any history
        self._new_window()  # the burn-in draws its own (dropout masks)
        with torch.no_grad():
            burn_resets = None if resets is None else resets[:steps]
            _, state = unroll(self.model, inputs[:steps], self.state, burn_resets)
        self.state = states.detach(state)
        return inputs[steps:], None if resets is None else resets[steps:]

    def _new_window(self) -> None:
        """Call the model's ``new_window()`` if it has one (per-window dropout masks,
        :mod:`tbptt.models.dropout`)."""
        new_window = getattr(self.model, "new_window", None)
        if callable(new_window):
            new_window()

    def _window(self, span: Span, chunk: Chunk) -> Window:
        """Run one window from the carried state and compute its loss.

        The run is split where the next window starts, to carry the state entering
        that step (detached) without running any step twice more than TBPTT does;
        after a burn-in, the last window carries the state at the chunk's end (the
        next chunk keeps no history).
        """
        self._new_window()
        next_start = max(span.end - self.overlap, span.start)
        if self.burn_in and span.end == chunk.inputs.shape[0]:
            next_start = span.end
        segment = self._segment_steps(span, chunk)
        if segment < span.end - span.start:
            return self._checkpointed_window(span, chunk, segment, next_start)
        outputs, state = [], self.state
        for start, end in ((span.start, next_start), (next_start, span.end)):
            if start < end:
                piece_resets = None if chunk.resets is None else chunk.resets[start:end]
                piece, state = unroll(self.model, chunk.inputs[start:end], state, piece_resets)
                outputs.append(piece)
            if end == next_start:
                self.state = states.detach(state)
        ran = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        history_steps = span.loss_start - span.start  # a slice, even [0:], costs a backward
        loss_outputs = ran[history_steps:] if history_steps else ran
        loss_steps = chunk.loss_steps(span.loss_start, span.end)
        targets = time_slice(chunk.targets, loss_steps)
        losses = self.loss_fn(loss_outputs, targets)
        window_mask = None if chunk.mask is None else chunk.mask[loss_steps]
        check_losses(losses, targets)
        loss, count = masked_mean(losses, window_mask)
        return Window(
            loss, count, loss_outputs, loss_steps.start, loss_steps.stop, self._lr_scale(span)
        )

    def _penalised(self, window: Window, span: Span, chunk: Chunk) -> Window:
        """``window`` with the model's ``window_penalty(counted)`` added to its loss
        (AR and TAR in the built-in models); ``counted: (L, B)`` marks the window's
        steps that carry loss and are not padding."""
        penalty = getattr(self.model, "window_penalty", None)
        if not callable(penalty):
            return window
        batch, device = chunk.inputs.shape[1], chunk.inputs.device
        if chunk.mask is None:
            carried = torch.ones(span.end - span.loss_start, batch, dtype=torch.bool, device=device)
        else:
            carried = chunk.mask[chunk.loss_steps(span.loss_start, span.end)]
        counted = torch.cat([carried.new_zeros(span.loss_start - span.start, batch), carried])
        value = penalty(counted)
        if value is None:
            return window
        window.data_loss, window.loss = window.loss, window.loss + value
        return window

    def _lr_scale(self, span: Span) -> float:
        if isinstance(self.k1, RandomTruncation):
            return (span.end - span.loss_start) / self.k1.mean
        return 1.0

    def _segment_steps(self, span: Span, chunk: Chunk) -> int:
        """The checkpoint segment length for ``span`` (its length: run it plainly)."""
        steps = span.end - span.start
        if self.checkpointing is None:
            return steps

        def probe() -> tuple[float, int]:
            inputs = chunk.inputs
            key = (tuple(inputs.shape[1:]), inputs.dtype, inputs.device, self.model.training)
            if key not in self._probed:
                start = max(span.start, span.end - recompute.PROBE_STEPS)
                run = self._segment_loss(span, chunk)
                parameters = self.model.parameters()
                self._probed[key] = recompute.probe(run, inputs, start, self.state, parameters)
            return self._probed[key]

        return self.checkpointing.segment_steps(steps, probe)

    def _checkpointed_window(
        self, span: Span, chunk: Chunk, segment: int, next_start: int
    ) -> Window:
        """The window run as checkpointed segments of ``segment`` steps: its loss is
        the segments' loss sums over the window's valid count; no outputs are kept."""
        bounds = recompute.boundaries(span.start, next_start, span.end, segment)
        run = self._segment_loss(span, chunk)
        total, self.state = recompute.run_segments(
            run, chunk.inputs, bounds, self.state, next_start
        )
        loss_steps = chunk.loss_steps(span.loss_start, span.end)
        if chunk.mask is None:
            batch = chunk.inputs.shape[1]
            count = torch.tensor((span.end - span.loss_start) * batch, device=total.device)
        else:
            count = chunk.mask[loss_steps].sum()
        loss = total / count.clamp(min=1)
        return Window(loss, count, None, loss_steps.start, loss_steps.stop, self._lr_scale(span))

    def _segment_loss(self, span: Span, chunk: Chunk) -> recompute.SegmentFn:
        """The function one checkpointed segment runs: steps ``[start, start + S)``
        from ``state``, returning the masked loss sum of those of them in the
        window's loss steps, and the state after them."""

        def run(inputs: Tensor, start: int, state: State) -> tuple[Tensor, State]:
            end = start + inputs.shape[0]
            resets = None if chunk.resets is None else chunk.resets[start:end]
            outputs, state = unroll(self.model, inputs, state, resets)
            first = max(span.loss_start, start)
            if first >= end:  # history steps only: no loss
                return outputs.new_zeros(()), state
            loss_steps = chunk.loss_steps(first, end)
            targets = time_slice(chunk.targets, loss_steps)
            losses = self.loss_fn(outputs[first - start :], targets)
            check_losses(losses, targets)
            mask = None if chunk.mask is None else chunk.mask[loss_steps]
            return masked_sum(losses, mask)[0], state

        return run


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
    inputs: Tensor, targets: Targets, resets: Tensor | None, mask: Tensor | None
) -> tuple[Tensor | None, Tensor | None]:
    """Validate a chunk's shapes; returns ``resets`` and ``mask`` as bool tensors on
    the inputs' device (``None`` where not given)."""
    for name, given in (("inputs", inputs), ("resets", resets), ("mask", mask)):
        if given is not None and not isinstance(given, Tensor):
            raise TBPTTError(
                f"{name} must be a torch.Tensor, got {type(given).__name__}: "
                "convert it with torch.as_tensor"
            )
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise TBPTTError(
            f"inputs must be time-major (T, B, ...) with T >= 1, got shape {tuple(inputs.shape)}"
        )
    steps = tuple(inputs.shape[:2])

    def check_target(target: Tensor) -> Tensor:
        if not isinstance(target, Tensor):
            raise TBPTTError(
                f"targets must be a torch.Tensor or a nesting of them, got "
                f"{type(target).__name__}: convert it with torch.as_tensor"
            )
        if tuple(target.shape[:2]) != steps:
            raise TBPTTError(
                f"targets shape {tuple(target.shape)} does not start with the inputs' (T, B) "
                f"= {steps}: both are time-major"
            )
        return target

    states.map_state(check_target, targets)
    for name, flags in (("resets", resets), ("mask", mask)):
        if flags is not None and tuple(flags.shape) != steps:
            raise TBPTTError(
                f"{name} must have shape (T, B) = {steps} like the inputs, got {tuple(flags.shape)}"
            )

    def as_flags(flags: Tensor | None) -> Tensor | None:
        return None if flags is None else flags.to(device=inputs.device, dtype=torch.bool)

    return as_flags(resets), as_flags(mask)


def check_losses(losses: Tensor, targets: Targets) -> None:
    """Raise unless ``loss_fn`` returned one loss per element, ``(T, B)``."""
    steps = tuple(states.leaves(targets)[0].shape[:2])
    if tuple(losses.shape) != steps:
        raise TBPTTError(
            f"loss_fn returned shape {tuple(losses.shape)}, expected per-element losses "
            f"(T, B) = {steps}: use reduction='none' and do not average over time or batch"
        )


def gradients(
    model: nn.Module,
    inputs: Tensor,
    targets: Targets,
    loss_fn: LossFn,
    k1: Stride,
    k2: int | None = None,
    *,
    state: State = None,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
    burn_in: int = 0,
    checkpoint: bool | int = False,
    memory_budget: int | None = None,
) -> list[dict[str, Tensor]]:
    """The gradient of every TBPTT(k1, k2) window at fixed parameters, in window order.

    Args:
        model: follows the protocol ``forward(x, state) -> (y, state)``.
        inputs: ``(T, B, ...)``; targets: ``(T, B, ...)``, or a tuple, list or dict
            nesting of such tensors (sliced along time like the inputs).
        loss_fn: ``loss_fn(outputs, targets) -> (T, B)`` per-element losses.
        k1, k2: the truncation (``k2=None``: k2 = k1; ``k1=None``: full BPTT; a
            :class:`~tbptt.engine.windows.RandomTruncation` draws each window's k1).
        state: the state entering step 0 (``None``: the model's initial state).
        resets: ``(T, B)`` bool, true where a stream starts a new sequence.
        mask: ``(T, B)`` bool, false for padding.
        burn_in: the first ``burn_in`` steps run from ``state`` without gradient
            and without loss, only to refresh it; the windows cover the steps after.
        checkpoint, memory_budget: recompute activations in the backward pass
            instead of keeping them (see :class:`Runner`); the same gradients.

    Returns:
        One dict per window mapping each trainable parameter's name (as in
        ``model.named_parameters()``) to ``dL_n/dθ``.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    runner = Runner(
        model,
        loss_fn,
        k1,
        k2,
        state=state,
        burn_in=burn_in,
        checkpoint=checkpoint,
        memory_budget=memory_budget,
    )
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
