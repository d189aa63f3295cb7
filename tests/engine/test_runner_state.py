"""Runner.state_dict holds everything the streams carry: a runner rebuilt from it
(through bytes, as a checkpoint is) continues bit-identically, between chunks and
between two windows of a chunk."""

from __future__ import annotations

import io

import pytest
import torch

import tbptt
from tbptt import TBPTTError, losses
from tests.models_for_tests import make_data, make_model

CHUNKS = [make_data(11, 3, seed=seed, reset_p=0.1, mask_p=0.8) for seed in range(3)]


def make_runner(kind: str, model: torch.nn.Module) -> tbptt.Runner:
    """k1 < k2: history carried from chunk to chunk; random k1: draws to continue."""
    k1 = 3 if kind == "fixed" else tbptt.RandomTruncation(3, 1.5, seed=4)
    return tbptt.Runner(model, losses.mse, k1, 5)


def train(runner, model, chunks, stop=None):
    """SGD on every window of ``chunks``: the losses, and the runner's state_dict
    taken at ``stop``, (chunk, window) or (chunk, None) after that chunk."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for index, (inputs, targets, resets, mask) in enumerate(chunks):
        for number, window in enumerate(runner.windows(inputs, targets, resets=resets, mask=mask)):
            optimizer.zero_grad()
            window.loss.backward()
            optimizer.step()
            seen.append(window.loss.detach())
            if stop == (index, number):
                return seen, runner.state_dict()
        if stop == (index, None):
            return seen, runner.state_dict()
    return seen, None


def through_bytes(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def restored(kind: str, weights: dict, saved: dict) -> tuple[tbptt.Runner, torch.nn.Module]:
    model = make_model("lstm", seed=1)  # other weights, then the saved ones: a resumed run
    model.load_state_dict(weights)
    runner = make_runner(kind, model)
    runner.load_state_dict(through_bytes(saved))
    return runner, model


@pytest.mark.parametrize("kind", ["fixed", "random"])
@pytest.mark.parametrize("stop", [(1, 1), (0, None)], ids=["mid-chunk", "between-chunks"])
def test_a_runner_restored_from_its_state_dict_continues_bit_identically(kind, stop):
    model = make_model("lstm")
    whole, _ = train(make_runner(kind, model), model, CHUNKS)
    model = make_model("lstm")
    first, saved = train(make_runner(kind, model), model, CHUNKS, stop)
    assert (saved["chunk"] is None) == (stop[1] is None)
    runner, model = restored(kind, model.state_dict(), saved)
    chunk = stop[0] if saved["chunk"] is not None else stop[0] + 1  # the cut chunk again
    rest, _ = train(runner, model, CHUNKS[chunk:])
    assert len(first) + len(rest) == len(whole)
    for got, want in zip(first + rest, whole, strict=True):
        assert torch.equal(got, want)


def test_a_state_taken_mid_chunk_refuses_another_chunk():
    model = make_model("lstm")
    _, saved = train(make_runner("fixed", model), model, CHUNKS, (1, 1))
    runner, _ = restored("fixed", model.state_dict(), saved)
    inputs, targets, _, _ = make_data(7, 3)
    with pytest.raises(TBPTTError, match="pass that chunk again"):
        next(runner.windows(inputs, targets))
