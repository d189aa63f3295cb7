"""Diagnostics for choosing the truncation length k.

- :func:`gradient_flow`: the norm of ``dL/dh`` and each lag's share of the parameter
  gradient, lag by lag, for any protocol model;
- :func:`truncation_bias`: the cosine and relative error of each TBPTT(k1, k2)
  gradient against full BPTT on the same data and parameters, with time and memory;
- :func:`advise`: both on a sample, and the smallest k within a tolerance
  (``tbptt advise`` on the command line). How to read them: ``docs/diagnostics.md``.

Each takes its arguments in :class:`tbptt.Runner`'s order, ``(model, loss_fn,
inputs, targets, ...)``; the order of earlier releases, with the loss function after
the targets, still works for this release, with a ``DeprecationWarning``.
"""

from tbptt.diagnostics.advice import (
    Advice,
    advise,
    choose_k2,
    default_truncations,
    table,
    verdict,
)
from tbptt.diagnostics.bias import Bias, Truncated, truncated_gradient, truncation_bias
from tbptt.diagnostics.flow import GradientFlow, gradient_flow
from tbptt.diagnostics.plots import plot_bias, plot_flow

__all__ = [
    "Advice",
    "Bias",
    "GradientFlow",
    "Truncated",
    "advise",
    "choose_k2",
    "default_truncations",
    "gradient_flow",
    "plot_bias",
    "plot_flow",
    "table",
    "truncated_gradient",
    "truncation_bias",
    "verdict",
]
