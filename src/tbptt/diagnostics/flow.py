"""Gradient flow through time: how far back the gradient of a loss step reaches.

Lag d counts steps back from a loss step t: lag d is step t - d, the state that step
reads (``h_{t-d-1}`` in ``semantics.md``; the issue's ``dL/dh_{t-tau}`` with tau = d + 1)
and the parameters it uses. The loss step's own step is lag 0. A window of TBPTT(k1, k2)
whose newest loss step is t reaches back to step t - k2 + 1: it keeps lags 0 .. k2 - 1
and drops the gradient of the state read at lag k2 - 1 (the constant state entering
the window). Its oldest loss step keeps lags 0 .. k2 - k1.

The model runs one step per call, the state carried, each step's entering state a
leaf of its own graph, so the gradient of one loss step is pulled back lag by lag
(``torch.autograd.grad`` of each step's outputs with the previous lag's state
gradient): any model that follows the protocol works, with no hooks. The cost is one
step's backward per lag and end point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tbptt.engine import LossFn, unroll
from tbptt.engine import state as states
from tbptt.engine.runner import check_chunk, runner_order
from tbptt.engine.state import State
from tbptt.errors import TBPTTError


@dataclass
class GradientFlow:
    """The gradient of the sampled loss steps, lag by lag (shapes ``(D,)``, D lags).

    ``state_norm[d]``: the mean over end points t and streams b of
    ``||dl_{t,b} / dh||``, h the state read by step t - d (the norm over all leaves
    of the state); ``state_count[d]``: how many (t, b) pairs that mean covers (pairs
    whose lag crosses a reset or the start of the sample, or whose loss is masked,
    are left out). ``contribution_norm[d]``: the norm of G_d, the part of the gradient
    of the end points' mean loss that comes from the parameters' use at lag d;
    ``cumulative_cosine[d]``: the cosine between ``G_0 + ... + G_d`` and the full
    gradient ``G = sum_d G_d``. ``ends``: the loss steps sampled.
    """

    state_norm: Tensor
    state_count: Tensor
    contribution_norm: Tensor
    cumulative_cosine: Tensor
    gradient: Tensor
    """``(P,)``: the full BPTT gradient of the end points' mean loss, flattened."""
    ends: list[int]

    def mass_lag(self, fraction: float) -> int:
        """The smallest lag by which ``fraction`` of the summed state gradient norm
        (over lags) is reached: 0.9 and 0.99 say how far back gradients carry."""
        norms = torch.nan_to_num(self.state_norm)
        cumulative = norms.cumsum(0) / norms.sum().clamp(min=torch.finfo(norms.dtype).tiny)
        return int((cumulative < fraction - 1e-12).sum().clamp(max=len(norms) - 1))

    def horizon(self, tolerance: float) -> int:
        """The dependency length: the smallest lag d such that keeping lags 0 .. d of
        every sampled loss step gives a gradient with cosine >= ``tolerance`` to the
        full one (TBPTT(1, d + 1) on those steps)."""
        reached = (self.cumulative_cosine >= tolerance).nonzero()
        return int(reached[0]) if len(reached) else len(self.cumulative_cosine) - 1

    def decay_rate(self) -> float:
        """rho of the least-squares fit ``state_norm[d] ~ C rho^d`` (on a log scale)
        over the lags that every (end point, stream) pair reaches, so the mean is over
        the same pairs at each lag: < 1 vanishing, about 1 holding, > 1 exploding."""
        return self.geometric_fit()[1]

    def geometric_fit(self) -> tuple[float, float]:
        """``(C, rho)`` of that fit (see :meth:`decay_rate`)."""
        full = self.state_count == self.state_count.max()
        return geometric_fit(self.state_norm, full)

    def geometric_horizon(self, tolerance: float) -> int | None:
        """The lag Aicher, Foti & Fox (2019) would choose: with ``||dL/dh||`` decaying
        as rho^d, dropping lags beyond d leaves a relative bias of rho^(d+1) (the
        geometric tail); the smallest d where that is at most ``sqrt(1 - tolerance^2)``,
        the relative error that guarantees cosine >= ``tolerance``. ``None`` when
        rho >= 1 (no truncation is safe by this model), and when rho is 1 to within the
        fit's rounding (``ROUNDING``), which would give a horizon of ~1e16 lags."""
        rho = self.decay_rate()
        if not rho < 1.0 - ROUNDING:
            return None
        if rho <= 0.0:
            return 0
        allowed = math.sqrt(max(1.0 - tolerance**2, 0.0))
        if allowed <= 0.0:
            return None
        return max(math.ceil(math.log(allowed) / math.log(rho) - 1 - 1e-9), 0)


ROUNDING = 1e-9
"""How far from 1 a fitted rho may be and still count as 1: the least-squares fit of
norms that hold exactly (an orthogonal recurrence) gives 1 - 1e-16 or 1 + 1e-16."""


def geometric_fit(norms: Tensor, use: Tensor) -> tuple[float, float]:
    """``(C, rho)`` of the least-squares line through ``log norms[d]`` against d, over the
    lags ``use`` with finite, positive norms (``(nan, nan)`` when fewer than two)."""
    lags = torch.arange(len(norms), dtype=torch.float64)
    values = norms.detach().double().cpu()
    keep = torch.isfinite(values) & (values > 0) & use.cpu()
    if int(keep.sum()) < 2:
        return math.nan, math.nan
    x, y = lags[keep], values[keep].log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum()
    return float((y.mean() - slope * x.mean()).exp()), float(slope.exp())


def default_ends(steps: int, count: int) -> list[int]:
    """``count`` loss steps spread over the second half of ``steps`` (the last one
    included), so that most of them have a long history."""
    first = steps // 2
    points = torch.linspace(first, steps - 1, max(min(count, steps - first), 1))
    return sorted({int(round(float(p))) for p in points})


def trainable(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def flat(grads: tuple[Tensor | None, ...], params: list[Tensor]) -> Tensor:
    """Parameter gradients as one vector (zeros for unused parameters)."""
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def leaf(state: State) -> State:
    """A detached copy of ``state`` that requires grad: the root of one step's graph."""
    return None if state is None else states.map_state(lambda t: t.detach().requires_grad_(), state)


@dataclass
class StepGraphs:
    """The model run one step at a time: ``read[s]`` the leaf state step s reads
    (``None`` for step 0 from the initial state), ``outputs[s]: (1, B, ...)`` and
    ``left[s]`` the state it leaves, each step its own graph."""

    read: list[State]
    outputs: list[Tensor]
    left: list[State]

    @staticmethod
    def run(model: nn.Module, inputs: Tensor, state: State, resets: Tensor | None) -> StepGraphs:
        read: list[State] = []
        outputs, left = [], []
        carried = state
        for step in range(inputs.shape[0]):
            entering = leaf(carried)
            read.append(entering)
            if entering is not None and resets is not None and bool(resets[step].any()):
                initial = states.initial_state(model, entering, inputs.shape[1])
                entering = states.reset_streams(entering, initial, resets[step])
            output, carried = model(inputs[step : step + 1], entering)
            outputs.append(output)
            left.append(carried)
        return StepGraphs(read, outputs, left)


def row_norms(grads: list[Tensor]) -> Tensor:
    """``(B,)``: the norm of each stream's row over all leaves of a state gradient."""
    return torch.stack([g.reshape(g.shape[0], -1).square().sum(1) for g in grads]).sum(0).sqrt()


def check_ends(ends: list[int], steps: int) -> list[int]:
    chosen = sorted(set(ends))
    if not chosen or chosen[0] < 0 or chosen[-1] >= steps:
        raise TBPTTError(f"ends must be loss steps in [0, {steps}), got {list(ends)}")
    return chosen


def gradient_flow(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    state: State = None,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
    ends: list[int] | None = None,
    num_ends: int = 8,
    max_lag: int | None = None,
) -> GradientFlow:
    """Measure how the gradient of the loss at steps ``ends`` flows back through time.

    Args:
        model: follows the protocol; streams must not interact (every built-in model).
            Call ``model.eval()`` first if it has dropout, so every pass is the same.
        loss_fn: per-element losses ``(T, B)``.
        inputs: ``(T, B, ...)``; targets: ``(T, B, ...)``; resets, mask: ``(T, B)`` bool.
        state: the state entering step 0 (``None``: the initial state).
        ends: the loss steps to follow back (default: ``num_ends`` of them spread over
            the second half of the sample).
        max_lag: follow each end point back at least this many lags, not further
            than ``min(ends) - max_lag``: the steps before run without gradient (their
            memory is not kept), and the flow's full gradient starts there too.

    Returns:
        A :class:`GradientFlow` over lags 0 .. max(ends) (or the steps followed).
    """
    loss_fn, inputs, targets = runner_order(loss_fn, inputs, targets, "gradient_flow")
    resets, mask = check_chunk(inputs, targets, resets, mask)
    steps = inputs.shape[0]
    ends = default_ends(steps, num_ends) if ends is None else check_ends(ends, steps)
    first = 0 if max_lag is None else max(ends[0] - max_lag, 0)
    if first:
        with torch.no_grad():
            _, state = unroll(
                model, inputs[:first], state, None if resets is None else resets[:first]
            )
        inputs, targets = inputs[first:], targets[first:]
        resets = None if resets is None else resets[first:]
        mask = None if mask is None else mask[first:]
        ends = [end - first for end in ends]
    span = ends[-1] + 1
    inputs, targets = inputs[:span], targets[:span]
    resets = None if resets is None else resets[:span]
    valid = torch.ones(targets.shape[:2], dtype=torch.bool, device=inputs.device)
    valid = valid if mask is None else mask[:span]
    params, count = trainable(model), valid[ends].sum().clamp(min=1)
    outputs, _ = unroll(model, inputs, state, resets)
    end_losses = torch.where(valid[ends], loss_fn(outputs[ends], targets[ends]), 0.0)
    grads = torch.autograd.grad(end_losses.sum() / count, params, allow_unused=True)
    pull = Pull(StepGraphs.run(model, inputs, state, resets), params, loss_fn, targets, valid)
    return pull.flow(flat(grads, params), ends, count, resets)


@dataclass
class Pull:
    """Pulls the gradient of single loss steps back through the step graphs, lag by lag.

    ``cotangents[t]``: the gradient of loss step t's summed loss (over its valid
    streams) with respect to the state read at the current lag; ``alive[t]: (B,)``
    the streams whose chain has crossed no reset.
    """

    graphs: StepGraphs
    params: list[Tensor]
    loss_fn: LossFn
    targets: Tensor
    valid: Tensor

    def flow(
        self, gradient: Tensor, ends: list[int], count: Tensor, resets: Tensor | None
    ) -> GradientFlow:
        """Every lag of every end point; ``gradient`` is the full gradient of their
        mean loss (over ``count`` valid elements)."""
        span = ends[-1] + 1
        norm_sum = torch.zeros(span, dtype=gradient.dtype, device=gradient.device)
        norm_count = torch.zeros(span, dtype=torch.long, device=gradient.device)
        contribution_norm, cumulative_cosine = (
            torch.zeros_like(norm_sum),
            torch.zeros_like(norm_sum),
        )
        cumulative = torch.zeros_like(gradient)
        cotangents: dict[int, list[Tensor]] = {}
        alive = {end: self.valid[end].clone() for end in ends}
        for lag in range(span):
            contribution = torch.zeros_like(gradient)
            for end in ends:
                if end < lag or (lag > 0 and end not in cotangents):
                    continue
                step = end - lag
                param_grads, state_grads = self.step_back(step, end, cotangents.pop(end, None))
                contribution += param_grads
                if state_grads is None:
                    continue
                cotangents[end] = state_grads
                if resets is not None:
                    alive[end] &= ~resets[step]
                norm_sum[lag] += row_norms(state_grads)[alive[end]].sum()
                norm_count[lag] += alive[end].sum()
            cumulative += contribution / count
            contribution_norm[lag] = contribution.norm() / count
            cumulative_cosine[lag] = cosine(cumulative, gradient)
        state_norm = norm_sum / norm_count.clamp(min=1)
        state_norm[norm_count == 0] = math.nan
        return GradientFlow(
            state_norm, norm_count, contribution_norm, cumulative_cosine, gradient, ends
        )

    def step_back(
        self, step: int, end: int, cotangent: list[Tensor] | None
    ) -> tuple[Tensor, list[Tensor] | None]:
        """The gradient of loss step ``end`` through step ``step`` alone: its parameter
        part (flat) and the gradient of the state the step read (``None`` for step 0
        from the initial state). ``cotangent``: the gradient of the state it left."""
        read_state = self.graphs.read[step]
        read = [] if read_state is None else states.leaves(read_state)
        if cotangent is None:  # the loss step itself
            losses = self.loss_fn(self.graphs.outputs[end], self.targets[end : end + 1])[0]
            outputs = [torch.where(self.valid[end], losses, 0.0).sum()]
        else:
            outputs = states.leaves(self.graphs.left[step])
        grads = torch.autograd.grad(
            outputs, read + self.params, cotangent, retain_graph=True, allow_unused=True
        )
        param_grads = flat(grads[len(read) :], self.params)
        if not read:
            return param_grads, None
        state_grads = [
            torch.zeros_like(r) if g is None else g
            for g, r in zip(grads[: len(read)], read, strict=True)
        ]
        return param_grads, state_grads


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """The cosine between two vectors, in [-1, 1] despite rounding; 0 when either is zero."""
    scale = a.norm() * b.norm()
    value = (a @ b) / scale.clamp(min=torch.finfo(a.dtype).tiny)
    return torch.where(scale > 0, value.clamp(-1.0, 1.0), 0.0)
