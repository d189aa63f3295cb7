"""Independent oracles for the engine's tests: TBPTT written out step by step.

Nothing here uses the engine: windows come from the formulas of semantics.md, the
model runs one step at a time, resets blend states arithmetically, and every window
is recomputed from step 0.
"""

from __future__ import annotations

import torch
from torch import nn


def window_bounds(steps, k1, k2):
    """(s_n, t_{n-1}, t_n) for every window, straight from semantics.md."""
    k1 = steps if k1 is None else k1
    k2 = k1 if k2 is None else k2
    bounds, t_prev = [], 0
    while t_prev < steps:
        t = min(t_prev + k1, steps)
        bounds.append((max(t_prev - (k2 - k1), 0), t_prev, t))
        t_prev = t
    return bounds


def blend(state, start, keep):
    """``keep * state + (1 - keep) * start`` leaf by leaf; ``keep: (B,)`` of 0/1."""
    if isinstance(state, torch.Tensor):
        k = keep.view((-1,) + (1,) * (state.dim() - 1)).to(state.dtype)
        return k * state + (1 - k) * start
    if isinstance(state, dict):
        return {key: blend(state[key], start[key], keep) for key in state}
    return type(state)(blend(s, i, keep) for s, i in zip(state, start, strict=True))


def zeros_like_state(state):
    if isinstance(state, torch.Tensor):
        return torch.zeros_like(state)
    if isinstance(state, dict):
        return {key: zeros_like_state(value) for key, value in state.items()}
    return type(state)(zeros_like_state(s) for s in state)


def step(model: nn.Module, x, state, reset):
    """One step: reset the flagged streams to the initial state, then run the model."""
    if state is not None and bool(reset.any()):
        make = getattr(model, "initial_state", None)
        start = zeros_like_state(state) if make is None else make(reset.shape[0])
        state = blend(state, start, (~reset).long())
    y, state = model(x.unsqueeze(0), state)
    return y[0], state


def detach_state(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {key: detach_state(value) for key, value in state.items()}
    return type(state)(detach_state(s) for s in state)


def random_window_bounds(steps, strides, overlap):
    """(s_n, t_{n-1}, t_n) with window n's stride ``strides[n - 1]`` (semantics.md,
    "Variants": k1 drawn per window, k2 = k1 + overlap)."""
    bounds, t_prev = [], 0
    for stride in strides:
        if t_prev >= steps:
            break
        t = min(t_prev + stride, steps)
        bounds.append((max(t_prev - overlap, 0), t_prev, t))
        t_prev = t
    return bounds


def window_gradients(
    model, inputs, targets, loss_fn, k1, k2=None, state=None, resets=None, mask=None, bounds=None
):
    """Every window's gradient at fixed parameters, by a per-step unroll from step 0
    (windows from ``bounds`` if given, else from k1 and k2)."""
    steps, batch = inputs.shape[:2]
    resets = torch.zeros(steps, batch, dtype=torch.bool) if resets is None else resets
    mask = torch.ones(steps, batch, dtype=torch.bool) if mask is None else mask
    result = []
    bounds = window_bounds(steps, k1, k2) if bounds is None else bounds
    for start, loss_start, end in bounds:
        h = state
        with torch.no_grad():
            for i in range(start):
                _, h = step(model, inputs[i], h, resets[i])
        h = None if h is None else detach_state(h)
        total = torch.zeros((), dtype=torch.float64)
        for i in range(start, end):
            y, h = step(model, inputs[i], h, resets[i])
            if i >= loss_start:
                losses = loss_fn(y.unsqueeze(0), targets[i : i + 1])[0]
                total = total + (losses * mask[i]).sum()
        loss = total / max(int(mask[loss_start:end].sum()), 1)
        result.append(named_gradients(model, loss))
    return result


def named_gradients(model: nn.Module, loss):
    """``d loss / d p`` for each trainable parameter of ``model``, by name (zeros
    for one the loss does not reach)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {
        n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(named, grads, strict=True)
    }
