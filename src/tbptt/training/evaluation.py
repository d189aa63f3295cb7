"""Evaluation: a model's metrics over batches, with the state carried and no truncation.

:func:`evaluate` is the one evaluation of the library: the trainer's validation,
``tbptt eval`` and a language model's test report all call it. It needs no trainer
and draws nothing at random (evaluation runs the model in eval mode), so seeding is
the caller's. Under torchrun the totals are summed over every rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from tbptt.data.streams import Batch
from tbptt.engine import LossFn, unroll
from tbptt.errors import one_of
from tbptt.training import distributed

METRICS = ("language", "regression", "classification")
"""What :func:`evaluate` reports besides the loss: perplexity and bits per token
(language), MSE and MAE (regression), accuracy (classification)."""

EVAL_SLICE_STEPS = 32
"""Steps per model call in evaluation: at most the outputs of a training window of
k1 >= 32 steps (which also keeps their gradient), whatever the batch's length."""


def check_metric(metric: str) -> None:
    """Refuse a ``metric`` that is not one of :data:`METRICS`."""
    one_of("metrics", metric, METRICS)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    metric: str = "language",
    *,
    device: torch.device | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` over ``batches`` (consecutive chunks of the same streams)
    with the state carried across them and no truncation, so the loss does not depend
    on k (``semantics.md``).

    Args:
        model: follows the tbptt model protocol; put in eval mode.
        loss_fn: per-element losses ``(T, B)``.
        batches: :class:`~tbptt.data.Batch` es, ``inputs: (T, B, ...)`` each.
        metric: one of :data:`METRICS`.
        device: where the batches go (default: the model's parameters' device).
        progress: called with the batches done after each.

    Each batch runs in slices of :data:`EVAL_SLICE_STEPS` steps, the state carried
    between them: the same metrics as one call per batch, with the outputs of only
    one slice alive at a time (a language model's ``(T, B, V)`` logits and the loss's
    copy of them are the bulk of evaluation's memory).
    """
    check_metric(metric)
    if device is None:
        device = next(model.parameters()).device
    model.eval()
    state, totals = None, {"loss": 0.0, "count": 0.0, "abs": 0.0, "correct": 0.0}
    for done, batch in enumerate(batches, start=1):
        batch = batch.to(device)
        for piece in batch.slices(EVAL_SLICE_STEPS):
            outputs, state = unroll(model, piece.inputs, state, piece.resets)
            losses = loss_fn(outputs, piece.targets)
            add_totals(totals, outputs, piece, losses, metric)
        if progress is not None:
            progress(done)
    totals = distributed.sum_values(totals)
    count = max(totals["count"], 1.0)
    loss = totals["loss"] / count
    metrics = {"loss": loss, **loss_metrics(loss, metric)}
    if metric == "regression":
        metrics["mae"] = totals["abs"] / count
    if metric == "classification":
        metrics["accuracy"] = totals["correct"] / count
    return metrics


def loss_metrics(loss: float, metric: str) -> dict[str, float]:
    """What a mean loss says under ``metric``: perplexity and bits per token for a
    language model's, MSE for a regression's (its loss), nothing more otherwise."""
    if metric == "language":
        return {"perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2)}
    return {"mse": loss} if metric == "regression" else {}


def add_totals(
    totals: dict[str, float], outputs: Tensor, batch: Batch, losses: Tensor, metric: str
) -> None:
    """Accumulate masked loss sums and counts, and what ``metric`` reports besides:
    absolute errors (regression) or correct predictions (classification)."""
    mask = batch.mask
    totals["loss"] += float(torch.where(mask, losses, 0.0).sum())
    totals["count"] += float(mask.sum())
    if metric == "regression" and outputs.shape == batch.targets.shape:
        errors = (outputs - batch.targets).abs()
        errors = errors.flatten(2).mean(-1) if errors.dim() > 2 else errors
        totals["abs"] += float(torch.where(mask, errors, 0.0).sum())
    elif metric == "classification" and outputs.dim() == batch.targets.dim() + 1:
        totals["correct"] += float(((outputs.argmax(-1) == batch.targets) & mask).sum())
