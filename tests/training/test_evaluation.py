"""evaluate: a model's metrics over batches, the state carried, without a trainer."""

from __future__ import annotations

import math

import pytest
import torch

import tbptt
from tbptt.data import Streams
from tbptt.training import evaluation
from tbptt.training.evaluation import evaluate
from tbptt.training.trainer import TrainConfig, Trainer


class StepsPerCall(torch.nn.Module):
    """A built-in network that records how many steps each call runs."""

    def __init__(self, network):
        super().__init__()
        self.network, self.calls = network, []

    def forward(self, inputs, state=None, resets=None):
        self.calls.append(inputs.shape[0])
        return self.network(inputs, state, resets)


def language_streams(seed: int = 1) -> Streams:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 9, (2000,), generator=generator)
    starts = torch.rand(2000, generator=generator) < 0.02
    valid = torch.rand(2000, generator=generator) < 0.9
    return Streams(tokens[:-1], tokens[1:], 4, 100, starts=starts[:-1], valid=valid[:-1])


def test_evaluation_in_slices_equals_evaluation_in_one_piece(monkeypatch):
    streams = language_streams()
    torch.manual_seed(0)
    model = StepsPerCall(tbptt.models.LSTM(8, vocab_size=9, num_layers=2).double())
    loss_fn = tbptt.losses.cross_entropy
    monkeypatch.setattr(evaluation, "EVAL_SLICE_STEPS", 1000)
    whole = evaluate(model, loss_fn, streams.batches(0))
    assert max(model.calls) == 100  # one call per batch
    steps, model.calls = sum(model.calls), []
    monkeypatch.setattr(evaluation, "EVAL_SLICE_STEPS", 7)
    sliced = evaluate(model, loss_fn, streams.batches(0))
    assert max(model.calls) == 7 and sum(model.calls) == steps  # every step, in slices
    assert whole.keys() == sliced.keys()
    for name in whole:
        assert sliced[name] == pytest.approx(whole[name], rel=1e-12), name


def test_evaluation_is_the_masked_mean_loss_of_one_untruncated_run_of_the_streams():
    streams = language_streams()
    torch.manual_seed(0)
    model = tbptt.models.GRU(8, vocab_size=9).double()
    free = evaluate(model, tbptt.losses.cross_entropy, iter(list(streams.batches(0))))
    trainer = Trainer(model, tbptt.losses.cross_entropy, streams, TrainConfig(k1=10))
    batches = [batch.fields() for batch in streams.batches(0)]
    whole = [torch.cat(field) for field in zip(*batches, strict=True)]
    inputs, targets, resets, mask = whole  # every batch end to end: (T, B), one run
    with torch.no_grad():
        outputs, _ = model(inputs, None, resets=resets)
        losses = tbptt.losses.cross_entropy(outputs, targets)
    expected = float(losses[mask].mean())
    assert set(free) == {"loss", "perplexity", "bits_per_token"}
    for metrics in (free, trainer.evaluate(streams)):
        assert metrics["loss"] == pytest.approx(expected, rel=1e-10)
        assert metrics["perplexity"] == pytest.approx(math.exp(expected), rel=1e-10)
        assert metrics["bits_per_token"] == pytest.approx(expected / math.log(2), rel=1e-10)


def test_an_unknown_metric_is_refused():
    model = tbptt.models.GRU(8, vocab_size=9)
    with pytest.raises(tbptt.TBPTTError, match="metrics must be one of language"):
        evaluate(model, tbptt.losses.cross_entropy, [], "accuracy")
