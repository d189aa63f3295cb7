"""Truncation bias: how far the TBPTT(k1, k2) gradient is from the full BPTT gradient.

Both are gradients of the same objective, the mean loss over the sample (masked
elements excluded), at the same parameters. The **summed TBPTT gradient** compared
here is the count-weighted sum of the window gradients of ``semantics.md``::

    g(k1, k2) = sum_n (c_n / C) dL_n/dθ      c_n valid elements of window n, C = sum_n c_n

so that each loss step's gradient enters with the weight it has in the full
gradient, truncated as TBPTT(k1, k2) truncates it; g(T, T) is the full gradient
exactly. (The plain sum ``sum_n dL_n/dθ``, what SGD applies over one pass at fixed
parameters, is the same direction when the windows have equal counts, and larger by
the number of windows: cosines agree, relative errors would not.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tbptt.diagnostics.flow import cosine, flat, trainable
from tbptt.engine import LossFn, Runner
from tbptt.engine.memory import SavedTensors
from tbptt.engine.recompute import renamed
from tbptt.engine.runner import runner_order
from tbptt.engine.state import State
from tbptt.errors import TBPTTError


@dataclass
class Truncated:
    """One truncation's gradient on the sample and what it cost to compute."""

    k1: int | None
    k2: int | None
    gradient: Tensor
    """``(P,)``: g(k1, k2), flattened in ``model.parameters()`` order."""
    seconds: float
    """Wall time of the forward and backward passes of all windows."""
    activation_bytes: int
    """The most bytes autograd saved for one window's backward (exact, any device)."""
    windows: int
    device_peak_bytes: int | None = None
    """On CUDA: the peak memory allocated while computing it (``None`` elsewhere)."""


@dataclass
class Bias:
    """A truncation against full BPTT: ``cosine`` and ``relative_error`` =
    ``||g(k1, k2) - g_full|| / ||g_full||``, with the cost of each."""

    k1: int
    k2: int
    cosine: float
    relative_error: float
    seconds: float
    activation_bytes: int
    windows: int
    device_peak_bytes: int | None = None


def truncated_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    k1: int | None,
    k2: int | None = None,
    *,
    state: State = None,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
    recompute: bool | int = False,
    checkpoint: bool | int | None = None,
) -> Truncated:
    """g(k1, k2) on ``inputs: (T, B, ...)`` (see the module), timed and its activation
    memory counted; ``k1=None`` is full BPTT. ``recompute``: recompute activations in
    the backward pass (:class:`tbptt.Runner`), the same gradient in less memory
    (``checkpoint``: its old name, deprecated)."""
    loss_fn, inputs, targets = runner_order(loss_fn, inputs, targets, "truncated_gradient")
    params = trainable(model)
    recompute = renamed(recompute, checkpoint, "truncated_gradient")
    runner = Runner(model, loss_fn, k1, k2, state=state, recompute=recompute)
    meter = SavedTensors(exclude=params)
    total, count, windows = None, torch.zeros((), device=inputs.device), 0
    synchronize(inputs.device)
    if inputs.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(inputs.device)
    start = time.perf_counter()
    with meter:
        for window in runner.windows(inputs, targets, resets=resets, mask=mask):
            grads = torch.autograd.grad(window.loss, params, allow_unused=True)
            meter.release()
            weighted = flat(grads, params) * window.count
            total = weighted if total is None else total + weighted
            count, windows = count + window.count, windows + 1
    if total is None:
        raise TBPTTError("the sample gave no window: give inputs of T >= 1 steps")
    gradient = total / count.clamp(min=1)
    synchronize(inputs.device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(inputs.device) if inputs.device.type == "cuda" else None
    return Truncated(k1, k2, gradient, seconds, meter.peak_bytes, windows, peak)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU, so a timing covers the work (a CPU-GPU sync point)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(truncated: Truncated, full: Truncated, steps: int) -> Bias:
    """``truncated`` against the full gradient ``full`` over ``steps`` steps."""
    reference = full.gradient
    error = (truncated.gradient - reference).norm() / reference.norm().clamp(min=1e-30)
    k1 = steps if truncated.k1 is None else truncated.k1
    k2 = steps if truncated.k2 is None else truncated.k2
    return Bias(
        k1,
        k2,
        float(cosine(truncated.gradient, reference)),
        float(error),
        truncated.seconds,
        truncated.activation_bytes,
        truncated.windows,
        truncated.device_peak_bytes,
    )


def truncation_bias(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    truncations: list[tuple[int, int]],
    *,
    state: State = None,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
    recompute: bool | int = False,
    progress: Callable[[], None] | None = None,
    checkpoint: bool | int | None = None,
) -> tuple[list[Bias], Truncated]:
    """The bias of each TBPTT(k1, k2) in ``truncations`` on one sample, and the full
    BPTT gradient it is measured against (its time and memory are the baseline).

    ``inputs: (T, B, ...)``, ``targets: (T, B, ...)``, ``resets, mask: (T, B)``. Call
    ``model.eval()`` first if it has dropout. ``recompute=True`` computes the full
    gradient by recomputing activations (for samples whose full BPTT does not fit in
    memory); its time and memory are then those of that. ``progress`` is called after
    each gradient (the full one, then one per truncation). ``checkpoint``: the old name
    of ``recompute``, deprecated.
    """
    loss_fn, inputs, targets = runner_order(loss_fn, inputs, targets, "truncation_bias")
    tick = progress or (lambda: None)
    options = {"state": state, "resets": resets, "mask": mask}
    recompute = renamed(recompute, checkpoint, "truncation_bias")
    full = truncated_gradient(model, loss_fn, inputs, targets, None, recompute=recompute, **options)
    tick()
    steps = inputs.shape[0]
    rows = []
    for k1, k2 in truncations:
        gradient = truncated_gradient(model, loss_fn, inputs, targets, k1, k2, **options)
        rows.append(compare(gradient, full, steps))
        tick()
    return rows, full
