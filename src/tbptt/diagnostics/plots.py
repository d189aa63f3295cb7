"""The advisor's two figures: gradient flow over lags, and bias and cost against k."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tbptt.diagnostics.advice import Advice
from tbptt.figures import pyplot, save_figure


def plot_flow(advice: Advice, path: Path) -> None:
    """Left: ``||dL/dh||`` against the lag (log scale) with the geometric fit and the
    lags holding 90% / 99% of it; right: each lag's share of the parameter gradient
    and the cosine of the gradient truncated there to the full one."""
    plt, flow = pyplot(), advice.flow
    lags = torch.arange(len(flow.state_norm)).numpy()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    every = (flow.state_count == flow.state_count.max()).cpu().numpy()
    norms = flow.state_norm.cpu().numpy()
    left.semilogy(lags[every], norms[every], ".-", color="C0", label="mean ||dL/dh||")
    if not every.all():
        left.semilogy(
            lags[~every], norms[~every], ".", color="C0", alpha=0.3, label="(fewer end points)"
        )
    scale, rho = flow.geometric_fit()
    if math.isfinite(rho):
        left.semilogy(lags, scale * rho**lags, "--", color="gray", label=f"fit {rho:.3f}^lag")
    for fraction, style in ((0.9, ":"), (0.99, "-.")):
        lag = flow.mass_lag(fraction)
        left.axvline(lag, color="C3", linestyle=style, label=f"{fraction:.0%} of the mass: {lag}")
    left.set(xlabel="lag (steps back from the loss step)", ylabel="gradient norm")
    left.set_title("does the gradient vanish, hold or explode?")
    left.legend(fontsize=8)
    right.semilogy(lags, flow.contribution_norm.cpu().numpy(), ".-", color="C1", label="||G_lag||")
    right.set(xlabel="lag", ylabel="parameter gradient from this lag")
    cosine_axis = right.twinx()
    cosine_axis.plot(
        lags, flow.cumulative_cosine.cpu().numpy(), color="C2", label="cosine up to lag"
    )
    cosine_axis.axhline(advice.tolerance, color="C2", linestyle=":")
    cosine_axis.axvline(
        advice.horizon, color="C3", linestyle="--", label=f"horizon {advice.horizon}"
    )
    cosine_axis.set(
        ylabel="cosine to the full gradient",
        ylim=(min(0.0, float(flow.cumulative_cosine.min())), 1.02),
    )
    right.set_title("how far back the parameter gradient comes from")
    right.legend(loc="center right", fontsize=8)
    cosine_axis.legend(loc="lower right", fontsize=8)
    save_figure(figure, path)


def plot_bias(advice: Advice, path: Path) -> None:
    """Left: cosine and relative error to the full gradient against k2 (circles k1 =
    k2, squares k1 < k2); right: time and activation memory relative to full BPTT."""
    plt, rows, full = pyplot(), advice.rows, advice.full
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for overlap, marker in ((False, "o"), (True, "s")):
        chosen = sorted((r for r in rows if (r.k1 < r.k2) == overlap), key=lambda r: r.k2)
        name, k2s = "k1 < k2" if overlap else "k1 = k2", [r.k2 for r in chosen]
        curves = (
            (left, [r.cosine for r in chosen], "-", "C0", "cosine"),
            (left, [r.relative_error for r in chosen], "--", "C1", "relative error"),
            (right, [r.seconds / max(full.seconds, 1e-12) for r in chosen], "-", "C2", "time"),
            (
                right,
                [r.activation_bytes / max(full.activation_bytes, 1) for r in chosen],
                "--",
                "C4",
                "memory",
            ),
        )
        for axis, values, line, color, label in curves if chosen else ():
            axis.plot(k2s, values, marker + line, color=color, label=f"{label} ({name})")
    left.axhline(
        advice.tolerance, color="gray", linestyle=":", label=f"tolerance {advice.tolerance}"
    )
    best = advice.recommended
    if best is not None:
        left.axvline(
            best.k2, color="C3", linestyle="--", label=f"recommended ({best.k1}, {best.k2})"
        )
    left.set(
        xscale="log", xlabel="k2 (steps a gradient flows back)", ylabel="vs. the full gradient"
    )
    left.set_title("truncation bias")
    right.axhline(1.0, color="gray", linestyle=":", label="full BPTT")
    right.set(xscale="log", yscale="log", xlabel="k2", ylabel="relative to full BPTT")
    right.set_title("cost of one pass over the sample")
    ticks = sorted({row.k2 for row in rows})
    for axis in (left, right):
        axis.set_xticks(ticks, [str(k) for k in ticks])
        axis.minorticks_off()
        axis.legend(fontsize=8)
    save_figure(figure, path)
