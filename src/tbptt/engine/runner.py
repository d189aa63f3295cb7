"""The BPTT engine: exact full and truncated BPTT for any recurrent model.

A model follows the protocol ``forward(inputs: (T, B, ...), state) -> (outputs: (T, B,
...), state)`` with ``state=None`` meaning its initial state (see ``tbptt.engine.state``). A
model that declares ``accepts_resets = True`` (or, without the attribute, whose
``forward`` takes a ``resets: (T, B)`` keyword) applies resets itself (the built-in
models do, in one fused call); for any other model the engine splits
the sequence at the steps where some stream resets and resets those streams' state
between the pieces.

Targets may be one tensor ``(T, B, ...)`` or any tuple, list or dict nesting of
them (a loss that needs several, such as PPO's actions, advantages and old
log-probabilities): every leaf is sliced along time like the inputs.

With ``burn_in=m`` the first m steps of every chunk run without gradient and
without loss, only to refresh a stored state (R2D2's replay); the windows are laid
out over the steps after them.

With ``recompute=`` (activation checkpointing) a window keeps only the states at
segment boundaries and recomputes the rest in the backward pass
(``tbptt.engine.recompute``): the same gradient in a fraction of the memory.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from tbptt.engine import recompute as recomputing
from tbptt.engine import state as states
from tbptt.engine.state import State
from tbptt.engine.windows import K1, Span, check_truncation, overlap
from tbptt.errors import TBPTTError
from tbptt.resets import reset_pieces

Targets = Any
"""A tensor ``(T, B, ...)``, or a tuple, list or dict nesting of tensors that each
start with ``(T, B)``: sliced along time like the inputs, passed whole to the loss."""

LossFn = Callable[[Tensor, Targets], Tensor]
"""``loss_fn(outputs, targets) -> (T, B)`` per-element losses."""


class Chunked(Protocol):
    """A chunk as one object (:class:`tbptt.data.Batch` is one): what
    :meth:`Runner.windows` takes in place of its four arguments."""

    @property
    def inputs(self) -> Tensor: ...
    @property
    def targets(self) -> Targets: ...
    @property
    def resets(self) -> Tensor | None: ...
    @property
    def mask(self) -> Tensor | None: ...


def time_slice(targets: Targets, steps: slice) -> Targets:
    """Steps ``steps`` of every leaf of ``targets`` (each time-major)."""
    return states.map_state(lambda leaf: leaf[steps], targets)


def accepts_resets(model: nn.Module) -> bool:
    """Whether ``model`` applies resets itself: its ``accepts_resets`` attribute where
    it declares one (``True``: ``forward`` takes a ``resets: (T, B)`` keyword), else
    whether ``forward``'s signature has a ``resets`` parameter."""
    declared = getattr(model, "accepts_resets", None)
    if isinstance(declared, bool):
        return declared
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
    reset_steps, pieces = reset_pieces(resets)  # a CPU-GPU sync
    outputs = []
    for start, end in pieces:
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
    mean k1 with :class:`~tbptt.engine.windows.RandomTruncation`, else 1.0
    (:meth:`~tbptt.engine.windows.Stride.lr_scale`).
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

    ``recompute=True`` runs each window as segments of about ``sqrt(L)`` steps for
    a window of L steps, keeping only the states between them and recomputing the
    rest in the backward pass (the same gradient; ``docs/memory.md``);
    ``recompute=S`` uses segments of S steps; ``memory_budget=bytes`` picks the
    longest segments whose activations and boundary states fit the budget. (The
    keyword was ``checkpoint=`` before; that name still works, with a warning, for
    this release: "checkpoint" now means saved files only.)

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
        k1: K1,
        k2: int | None = None,
        *,
        state: State = None,
        burn_in: int = 0,
        recompute: bool | int = False,
        memory_budget: int | None = None,
        checkpoint: bool | int | None = None,
    ) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.stride, self.k2 = check_truncation(k1, k2)
        """The stride k1 (:class:`~tbptt.engine.windows.Stride`) and k2."""
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
            raise TBPTTError(
                f"burn_in must be an int >= 0 (steps without gradient), got {burn_in!r}"
            )
        self.burn_in = burn_in
        self.overlap = overlap(self.stride, self.k2)
        recompute = recomputing.renamed(recompute, checkpoint, "Runner")
        self.recomputing = recomputing.check_recompute(recompute, memory_budget)
        self._probed: dict[tuple[object, ...], tuple[float, int]] = {}
        self.state = states.detach(state)
        """The state the streams carry into the next window (read it; set it with
        :meth:`reset` or :meth:`load_state_dict`)."""
        self._past: tuple[Tensor, Tensor | None] | None = None
        """The last ``k2 - k1`` steps' inputs and resets, run again by the next chunk."""
        self._chunk: tuple[list[Span], int] | None = None
        """While a chunk's windows are being taken: its spans and the windows done."""
        self._resume: tuple[list[Span], int] | None = None
        """From :meth:`load_state_dict` of a chunk cut short: where the next call to
        :meth:`windows` (with that chunk again) continues."""
        self._next_k2: int | None = None
        """A k2 set mid-chunk, for the next chunk."""

    def reset(self, state: State = None) -> None:
        """Start every stream afresh from ``state`` (the initial state by default)."""
        self.state = states.detach(state)
        self._past = self._chunk = self._resume = None

    @property
    def mid_chunk(self) -> bool:
        """Whether windows of the chunk under way remain to be taken."""
        return self._chunk is not None

    def set_k2(self, k2: int) -> None:
        """Let the windows of the next chunk flow back ``k2`` steps, k1 unchanged (set
        between chunks, at once). The history kept for the next chunk grows from the
        end of this one; until it has ``k2 - k1`` steps, a chunk's first windows start
        from the carried state (a constant)."""
        checked = self.stride.check_k2(k2)
        if self.mid_chunk:
            self._next_k2 = checked
            return
        self.k2, self._next_k2 = checked, None
        self.overlap = overlap(self.stride, self.k2)

    def state_dict(self) -> dict[str, Any]:
        """Everything the streams carry, for an exact continuation: the carried
        ``state``, the ``history`` steps the next chunk runs again, ``k2``, the
        stride's random draws (``truncation``) and, taken between two windows of a
        chunk, that chunk's windows and how many are done (``chunk``)."""
        chunk = None
        if self._chunk is not None:
            chunk_spans, done = self._chunk
            chunk = {"spans": [(s.start, s.loss_start, s.end) for s in chunk_spans], "done": done}
        return {
            "state": self.state,
            "history": self._past,
            "k2": self.k2,
            "next_k2": self._next_k2,
            "truncation": self.stride.state_dict(),
            "chunk": chunk,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (a checkpoint's): the next call to
        :meth:`windows` takes the chunk that follows, or, for a state taken between
        two windows of a chunk, that chunk again, from the window after."""
        self.state, self._past = state["state"], state.get("history")
        self._chunk = None
        if state.get("k2") is not None:
            self.set_k2(state["k2"])  # as advise_every last chose it
        self._next_k2 = state.get("next_k2")
        self.stride.load_state_dict(state.get("truncation") or {})
        chunk = state.get("chunk")
        self._resume = (
            None if chunk is None else ([Span(*s) for s in chunk["spans"]], chunk["done"])
        )

    def windows(
        self,
        inputs: Tensor | Chunked,
        targets: Targets = None,
        *,
        resets: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Iterator[Window]:
        """Yield the windows of the chunk ``inputs: (T, B, ...)``, ``targets: (T, B, ...)``
        (or a nesting of such tensors, see :data:`Targets`), or of a
        :class:`~tbptt.data.Batch` passed alone (any object with these four fields).

        ``resets: (T, B)`` marks sequence starts, ``mask: (T, B)`` valid elements. Each
        window is yielded before its backward pass: call ``window.loss.backward()``
        (and step the optimizer) before asking for the next. With a burn-in, the
        windows' ``loss_start`` and ``end`` count the burn-in steps.
        """
        inputs, targets, resets, mask = unpack(inputs, targets, resets, mask)
        resets, mask = check_chunk(inputs, targets, resets, mask)
        states.check_batch_size(self.state, inputs.shape[1])
        resume, self._resume = self._resume, None
        if self._next_k2 is not None and resume is None:
            self.set_k2(self._next_k2)
        if self.burn_in:
            inputs, resets = self._burn_in(inputs, resets, run=resume is None)
        history = 0
        if self._past is not None:
            past_inputs, past_resets = self._past
            history = past_inputs.shape[0]
            resets = join_resets(past_resets, resets, past_inputs, inputs)
            inputs = torch.cat([past_inputs, inputs])
        chunk = Chunk(inputs, targets, resets, mask, history, self.burn_in)
        chunk_spans, done = resume or (self.stride.spans(inputs.shape[0], self.k2, history), 0)
        if chunk_spans[-1].end != inputs.shape[0]:
            raise TBPTTError(
                f"the runner's state was taken inside a chunk of {chunk_spans[-1].end} steps "
                f"and this chunk has {inputs.shape[0]}: pass that chunk again to continue it"
            )
        keep = max(inputs.shape[0] - self.overlap, 0)
        past = (inputs[keep:], None if resets is None else resets[keep:])
        try:
            for index in range(done, len(chunk_spans)):
                window = self._penalised(
                    self._window(chunk_spans[index], chunk), chunk_spans[index], chunk
                )
                self._chunk = (chunk_spans, index + 1)
                if index + 1 == len(chunk_spans):  # the chunk is done: the next one follows
                    self._past = past if self.overlap and not self.burn_in else None
                    self._chunk = None
                yield window
        finally:  # a chunk given up on (its windows not all taken) is not resumed
            if self._chunk is not None and self._chunk[0] is chunk_spans:
                self._chunk = None

    def _burn_in(
        self, inputs: Tensor, resets: Tensor | None, run: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Run the burn-in steps without gradient from the carried state, which they
        refresh (unless ``run`` is false: a resumed chunk's burn-in already ran);
        returns the chunk's inputs and resets after them."""
        steps = self.burn_in
        if steps >= inputs.shape[0]:
            raise TBPTTError(
                f"burn_in={steps} leaves no step to learn from in a chunk of "
                f"T={inputs.shape[0]} steps: pass chunks longer than the burn-in, or lower it"
            )
        self._past = None  # the burn-in steps take the place of any history
        if not run:
            return inputs[steps:], None if resets is None else resets[steps:]
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
        return self.stride.lr_scale(span.end - span.loss_start)

    def _segment_steps(self, span: Span, chunk: Chunk) -> int:
        """The checkpoint segment length for ``span`` (its length: run it plainly)."""
        steps = span.end - span.start
        if self.recomputing is None:
            return steps

        def probe() -> tuple[float, int]:
            inputs = chunk.inputs
            key = (tuple(inputs.shape[1:]), inputs.dtype, inputs.device, self.model.training)
            if key not in self._probed:
                start = max(span.start, span.end - recomputing.PROBE_STEPS)
                run = self._segment_loss(span, chunk)
                parameters = self.model.parameters()
                self._probed[key] = recomputing.probe(run, inputs, start, self.state, parameters)
            return self._probed[key]

        return self.recomputing.segment_steps(steps, probe)

    def _checkpointed_window(
        self, span: Span, chunk: Chunk, segment: int, next_start: int
    ) -> Window:
        """The window run as checkpointed segments of ``segment`` steps: its loss is
        the segments' loss sums over the window's valid count; no outputs are kept."""
        bounds = recomputing.boundaries(span.start, next_start, span.end, segment)
        run = self._segment_loss(span, chunk)
        total, self.state = recomputing.run_segments(
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

    def _segment_loss(self, span: Span, chunk: Chunk) -> recomputing.SegmentFn:
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


def unpack(
    inputs: Tensor | Chunked, targets: Targets, resets: Tensor | None, mask: Tensor | None
) -> tuple[Tensor, Targets, Tensor | None, Tensor | None]:
    """A chunk's four parts, given as four or as one object holding them."""
    if isinstance(inputs, Tensor) or not hasattr(inputs, "inputs"):
        return inputs, targets, resets, mask  # type: ignore[return-value]  # check_chunk's job
    if targets is not None or resets is not None or mask is not None:
        raise TBPTTError(
            "windows(batch) takes the batch alone: its targets, resets and mask come with "
            "it (or pass inputs and targets as tensors)"
        )
    return inputs.inputs, inputs.targets, inputs.resets, inputs.mask


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


def runner_order(
    loss_fn: LossFn, inputs: Tensor, targets: Targets, where: str
) -> tuple[LossFn, Tensor, Targets]:
    """``(loss_fn, inputs, targets)``, the :class:`Runner`'s order, from a call that
    may still pass the order of earlier releases, ``(inputs, targets, loss_fn)``: the
    inputs are a tensor where the loss function belongs. The old order works for this
    release, with a ``DeprecationWarning`` naming ``where``, the function called."""
    if not isinstance(loss_fn, Tensor):
        return loss_fn, inputs, targets
    warnings.warn(
        f"{where}(model, inputs, targets, loss_fn, ...) is deprecated: pass "
        f"{where}(model, loss_fn, inputs, targets, ...), the Runner's order",
        DeprecationWarning,
        stacklevel=3,
    )
    return targets, loss_fn, inputs


def gradients(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Targets,
    k1: K1,
    k2: int | None = None,
    *,
    state: State = None,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
    burn_in: int = 0,
    recompute: bool | int = False,
    memory_budget: int | None = None,
    checkpoint: bool | int | None = None,
) -> list[dict[str, Tensor]]:
    """The gradient of every TBPTT(k1, k2) window at fixed parameters, in window order.

    The arguments come in :class:`Runner`'s order, the chunk between the loss and the
    truncation. The order of earlier releases, ``gradients(model, inputs, targets,
    loss_fn, k1, ...)``, still works for this release, with a ``DeprecationWarning``.

    Args:
        model: follows the protocol ``forward(x, state) -> (y, state)``.
        loss_fn: ``loss_fn(outputs, targets) -> (T, B)`` per-element losses.
        inputs: ``(T, B, ...)``; targets: ``(T, B, ...)``, or a tuple, list or dict
            nesting of such tensors (sliced along time like the inputs).
        k1, k2: the truncation (``k2=None``: k2 = k1; ``k1=None``: full BPTT; a
            :class:`~tbptt.engine.windows.RandomTruncation` draws each window's k1).
        state: the state entering step 0 (``None``: the model's initial state).
        resets: ``(T, B)`` bool, true where a stream starts a new sequence.
        mask: ``(T, B)`` bool, false for padding.
        burn_in: the first ``burn_in`` steps run from ``state`` without gradient
            and without loss, only to refresh it; the windows cover the steps after.
        recompute, memory_budget: recompute activations in the backward pass
            instead of keeping them (see :class:`Runner`); the same gradients
            (``checkpoint``: the old name of ``recompute``, deprecated).

    Returns:
        One dict per window mapping each trainable parameter's name (as in
        ``model.named_parameters()``) to ``dL_n/dθ``.
    """
    loss_fn, inputs, targets = runner_order(loss_fn, inputs, targets, "gradients")
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    runner = Runner(
        model,
        loss_fn,
        k1,
        k2,
        state=state,
        burn_in=burn_in,
        recompute=recomputing.renamed(recompute, checkpoint, "gradients"),
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
