"""Choosing k: the smallest truncation whose gradient is within a tolerance of full BPTT.

:func:`advise` measures the gradient flow and the bias of every candidate truncation
on a sample of the user's data at the model's current parameters, and recommends the
candidate with the smallest k2 whose gradient has cosine >= ``tolerance`` to the full
BPTT gradient (ties: the largest k1, the fewest windows). It also reports two
dependency lengths, both in lags (steps back from a loss step):

- ``horizon``: measured. The smallest lag d such that keeping lags 0 .. d of every
  sampled loss step reaches the tolerance; TBPTT(k1, k2) gives every loss step at
  least k2 - k1 lags, so k2 - k1 >= horizon is enough.
- ``geometric_horizon``: the estimate of Aicher, Foti & Fox (UAI 2019), who fit a
  geometric decay rate rho to ``||dL/dh||`` over lags and bound the relative bias of
  dropping lags beyond d by rho^(d+1). It needs no full gradient but trusts the
  geometric model, which fails when gradients do not decay (a copy task's spike at
  its delay, an LSTM that holds its memory).

The right k changes as a model learns: rerun it on a checkpoint during training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from torch import Tensor, nn

from tbptt.diagnostics.bias import Bias, Truncated, truncation_bias
from tbptt.diagnostics.flow import GradientFlow, gradient_flow
from tbptt.engine import LossFn
from tbptt.engine.recompute import renamed
from tbptt.engine.runner import runner_order
from tbptt.engine.state import State
from tbptt.errors import TBPTTError


@dataclass
class Advice:
    """What :func:`advise` measured and what it recommends."""

    flow: GradientFlow
    rows: list[Bias]
    """One per candidate truncation, in the order given."""
    full: Truncated
    """Full BPTT on the sample: the reference gradient, time and memory."""
    tolerance: float
    steps: int
    """T, the length of the sample."""

    @property
    def recommended(self) -> Bias | None:
        """The candidate with the smallest k2 within the tolerance (ties: the largest
        k1); ``None`` when none is (use full BPTT, or try larger k)."""
        good = [row for row in self.rows if row.cosine >= self.tolerance]
        return min(good, key=lambda row: (row.k2, -row.k1), default=None)

    @property
    def horizon(self) -> int:
        return self.flow.horizon(self.tolerance)

    @property
    def geometric_horizon(self) -> int | None:
        return self.flow.geometric_horizon(self.tolerance)

    def summary(self) -> dict[str, object]:
        """The evidence and the recommendation as plain data (for JSON)."""
        best = self.recommended
        flow = self.flow
        return {
            "tolerance": self.tolerance,
            "steps": self.steps,
            "recommended": None if best is None else {"k1": best.k1, "k2": best.k2},
            "horizon": self.horizon,
            "geometric_horizon": self.geometric_horizon,
            "decay_rate": flow.decay_rate(),
            "mass_lag_90": flow.mass_lag(0.9),
            "mass_lag_99": flow.mass_lag(0.99),
            "full": {
                "seconds": self.full.seconds,
                "activation_bytes": self.full.activation_bytes,
                "windows": self.full.windows,
                "device_peak_bytes": self.full.device_peak_bytes,
            },
            "rows": [asdict(row) for row in self.rows],
            "flow": {
                "ends": flow.ends,
                "state_norm": nan_to_none(flow.state_norm),
                "state_count": flow.state_count.tolist(),
                "contribution_norm": flow.contribution_norm.tolist(),
                "cumulative_cosine": flow.cumulative_cosine.tolist(),
            },
        }


def nan_to_none(values: Tensor) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def default_truncations(steps: int) -> list[tuple[int, int]]:
    """k1 = k2 = k and k1 = k / 2 < k2 = k for k = 2, 4, 8, ... below ``steps``."""
    candidates: list[tuple[int, int]] = []
    k = 2
    while k < steps:
        candidates += [(k, k), (k // 2, k)]
        k *= 2
    return candidates


def check_tolerance(tolerance: float, name: str = "tolerance") -> float:
    """Refuse a ``tolerance`` (a cosine to the full gradient) outside (0, 1]."""
    if not 0.0 < tolerance <= 1.0:
        raise TBPTTError(f"{name} is a cosine in (0, 1], got {tolerance}")
    return tolerance


def advise(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    truncations: list[tuple[int, int]] | None = None,
    *,
    tolerance: float = 0.95,
    state: State = None,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
    num_ends: int = 8,
    max_lag: int | None = None,
    recompute: bool | int = False,
    progress: Callable[[], None] | None = None,
    checkpoint: bool | int | None = None,
) -> Advice:
    """Measure gradient flow and truncation bias on one sample and recommend k.

    The arguments come in :class:`tbptt.Runner`'s order, as in every diagnostic; the
    order of earlier releases, ``(model, inputs, targets, loss_fn, ...)``, still works
    for this release, with a ``DeprecationWarning``. It measures gradients at fixed
    parameters, not a loss over batches, so it does not call
    :func:`tbptt.training.evaluate` (which sits above the diagnostics).

    Args:
        model: follows the protocol; run in eval mode here (dropout off), then put back.
        loss_fn: per-element losses ``(T, B)``.
        inputs: ``(T, B, ...)``, targets ``(T, B, ...)``, resets and mask ``(T, B)``:
            a sample of the data, T long enough to hold the dependencies of interest.
        truncations: candidate ``(k1, k2)`` pairs (default :func:`default_truncations`).
        tolerance: the cosine to the full gradient a truncation must reach.
        num_ends, max_lag: loss steps followed back for the gradient flow, and how
            far (see :func:`gradient_flow`).
        recompute: compute the full reference gradient recomputing activations
            (less memory); ``checkpoint`` is its old name, deprecated.
        progress: called after each measurement: the gradient flow, the full
            gradient, then each truncation's (``len(truncations) + 2`` calls).
    """
    loss_fn, inputs, targets = runner_order(loss_fn, inputs, targets, "advise")
    check_tolerance(tolerance)
    steps = inputs.shape[0]
    candidates = default_truncations(steps) if truncations is None else list(truncations)
    training = model.training
    model.eval()
    try:
        options = {"state": state, "resets": resets, "mask": mask}
        flow = gradient_flow(
            model, loss_fn, inputs, targets, num_ends=num_ends, max_lag=max_lag, **options
        )
        if progress is not None:
            progress()
        rows, full = truncation_bias(
            model,
            loss_fn,
            inputs,
            targets,
            candidates,
            recompute=renamed(recompute, checkpoint, "advise"),
            progress=progress,
            **options,
        )
    finally:
        model.train(training)
    return Advice(flow, rows, full, tolerance, steps)


def choose_k2(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    k1: int,
    *,
    tolerance: float = 0.95,
    resets: Tensor | None = None,
    mask: Tensor | None = None,
) -> int:
    """The smallest k2 among k1, 2 k1, 4 k1, ... (shorter than the sample) whose
    TBPTT(k1, k2) gradient has cosine >= ``tolerance`` to full BPTT's on the sample
    ``inputs: (T, B, ...)``, or the longest of them if none does: the trainer's
    ``advise_every`` rechooses k2 this way as the model learns. Dropout is off while
    it measures, so the random generators are untouched."""
    loss_fn, inputs, targets = runner_order(loss_fn, inputs, targets, "choose_k2")
    check_tolerance(tolerance)
    steps = inputs.shape[0]
    candidates = [k1 << i for i in range(steps.bit_length()) if k1 << i < steps] or [k1]
    training = model.training
    model.eval()
    try:
        pairs = [(k1, k2) for k2 in candidates]
        rows, _ = truncation_bias(model, loss_fn, inputs, targets, pairs, resets=resets, mask=mask)
    finally:
        model.train(training)
    return next((row.k2 for row in rows if row.cosine >= tolerance), candidates[-1])


def table(advice: Advice) -> str:
    """The evidence as a text table: each truncation's cosine and relative error to the
    full gradient, and its time and activation memory relative to full BPTT."""
    full = advice.full
    lines = [
        f"{'truncation':>16} {'cosine':>8} {'rel.error':>10} {'time':>9} {'time/full':>10} "
        f"{'memory':>10} {'mem/full':>9}"
    ]
    best = advice.recommended
    for row in advice.rows:
        mark = " <- recommended" if row is best else ""
        ok = "" if row.cosine >= advice.tolerance else "*"
        name = f"TBPTT({row.k1}, {row.k2})"
        lines.append(
            f"{name:>16} {row.cosine:>8.4f}{ok:1} {row.relative_error:>9.4f} "
            f"{row.seconds:>8.3f}s {row.seconds / max(full.seconds, 1e-12):>10.2f} "
            f"{mib(row.activation_bytes):>8.2f}MB "
            f"{row.activation_bytes / max(full.activation_bytes, 1):>9.3f}{mark}"
        )
    lines.append(
        f"{'full BPTT':>16} {1.0:>8.4f}  {0.0:>9.4f} {full.seconds:>8.3f}s {1.0:>10.2f} "
        f"{mib(full.activation_bytes):>8.2f}MB {1.0:>9.3f}"
    )
    return "\n".join(lines)


def mib(size: int) -> float:
    return size / 2**20


def verdict(advice: Advice) -> str:
    """The recommendation in words, with the flow's summary and the expected saving."""
    flow, best, full = advice.flow, advice.recommended, advice.full
    rho = flow.decay_rate()
    trend = "vanish" if rho < 0.98 else "explode" if rho > 1.02 else "hold"
    geometric = advice.geometric_horizon
    lines = [
        f"gradient flow: ||dL/dh|| changes by {rho:.3f} per step back (gradients {trend}); "
        f"90% of it within {flow.mass_lag(0.9)} steps, 99% within {flow.mass_lag(0.99)}",
        f"dependency length at cosine {advice.tolerance}: {advice.horizon} "
        f"step{'' if advice.horizon == 1 else 's'} measured, "
        + (
            "none by the geometric fit (rho >= 1)"
            if geometric is None
            else f"{geometric} by the geometric fit (Aicher et al. 2019)"
        ),
    ]
    if best is None:
        lines.append(
            f"no candidate reaches cosine {advice.tolerance}: use full BPTT or larger k "
            f"(every loss step needs k2 - k1 >= {advice.horizon})"
        )
    else:
        lines.append(
            f"recommended: TBPTT({best.k1}, {best.k2}), cosine {best.cosine:.4f}; against full "
            f"BPTT on {advice.steps} steps it saves "
            f"{1 - best.activation_bytes / max(full.activation_bytes, 1):.0%} of activation "
            f"memory and takes {best.seconds / max(full.seconds, 1e-12):.2f}x the time per "
            f"pass, with {best.windows // max(full.windows, 1)}x the updates"
        )
    return "\n".join(lines)
