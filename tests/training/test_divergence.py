"""A non-finite loss or gradient never reaches the parameters: the update is skipped
and counted, repeated failures roll back to the last checkpoint with a lower learning
rate, and a run that cannot recover stops with one clear error."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch

import tbptt
from tbptt import TBPTTError
from tbptt.data import Streams
from tbptt.training import checkpoints
from tbptt.training.trainer import TrainConfig, Trainer

STEPS, BATCH = 4, 2


def records(run_dir, kind):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def series_trainer(inputs, run_dir=None, **settings):
    """A GRU forecasting a series ``inputs: (N, 1)`` one step ahead."""
    streams = Streams(inputs[:-1], inputs[1:], BATCH, STEPS)
    torch.manual_seed(0)
    model = tbptt.models.GRU(8, input_size=1, output_size=1)
    config = TrainConfig(**{"k1": STEPS, "log_every": 1, "lr": 1e-2, **settings})
    return Trainer(model, tbptt.losses.mse, streams, config, metrics="regression", run_dir=run_dir)


def token_trainer(run_dir=None, **settings):
    tokens = torch.randint(0, 6, (401,), generator=torch.Generator().manual_seed(0))
    streams = Streams.language_model(tokens, BATCH, STEPS)
    torch.manual_seed(0)
    model = tbptt.models.LSTM(8, vocab_size=6)
    config = TrainConfig(**{"k1": STEPS, "log_every": 1, "lr": 1e-2, **settings})
    return Trainer(model, tbptt.losses.cross_entropy, streams, config, run_dir=run_dir)


def poison_gradients(trainer, bad):
    """Make the gradient NaN on the backward passes whose number (from 1) is in ``bad``;
    returns the list that counts the passes."""
    calls = []

    def hook(grad):
        calls.append(1)
        return grad * math.nan if len(calls) in bad else grad

    trainer.model.head.bias.register_hook(hook)
    return calls


@pytest.mark.parametrize(("k2", "skips"), [(STEPS, 1), (2 * STEPS, 2)])
def test_nan_in_a_batch_skips_its_updates_and_the_run_completes(tmp_path, k2, skips):
    inputs = torch.sin(torch.arange(201.0) / 5).unsqueeze(1)
    inputs[42, 0] = math.nan  # stream 0, in the window of steps 40-43
    trainer = series_trainer(inputs, tmp_path, k2=k2)
    trainer.fit()
    # the poisoned window (and the next, whose history repeats the NaN step) is
    # skipped; the NaN state is dropped, so the windows after it train again
    assert trainer.progress.skipped == skips and trainer.progress.rollbacks == 0
    assert trainer.progress.updates == 25 - skips  # 100 steps per stream, 4 per window
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    train = records(tmp_path, "train")
    assert train[-1]["skipped_updates"] == skips and train[-1]["rollbacks"] == 0
    assert records(tmp_path, "rollback") == []


def test_a_nan_gradient_is_caught_before_the_optimizer_step(tmp_path):
    trainer = token_trainer(tmp_path, max_windows=12)
    calls = poison_gradients(trainer, bad={5})
    trainer.fit()
    assert len(calls) == 13 and trainer.progress.updates == 12 and trainer.progress.skipped == 1
    for parameter in trainer.model.parameters():  # Adam stepped once per good window
        assert int(trainer.optimizer.state[parameter]["step"]) == 12
        assert torch.isfinite(parameter).all()
    skipped = [r["skipped_updates"] for r in records(tmp_path, "train")]
    assert skipped == [0] * 4 + [1] * 8


def test_repeated_failures_roll_back_to_the_last_checkpoint_with_a_lower_lr(tmp_path):
    trainer = token_trainer(tmp_path, max_windows=20, checkpoint_every=4, max_skips=3)
    poison_gradients(trainer, bad={10, 11, 12})  # updates 1-9 succeed, then 3 fail
    at_checkpoint = {}
    restored = {}

    def watch(record):
        if record["kind"] == "train" and record["window"] == 8:
            at_checkpoint.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
        if record["kind"] == "rollback":
            restored.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer.log.callbacks.append(watch)
    trainer.fit()
    assert (
        trainer.progress.rollbacks == 1
        and trainer.progress.skipped == 3
        and trainer.progress.updates == 20
    )
    for name, value in at_checkpoint.items():
        assert torch.equal(restored[name], value), name
    [rollback] = records(tmp_path, "rollback")
    assert rollback["window"] == 8 and rollback["from_window"] == 9
    assert rollback["lr"] == pytest.approx(5e-3) and rollback["skipped_updates"] == 3
    windows = [r["window"] for r in records(tmp_path, "train")]
    assert windows == list(range(1, 21))  # the undone updates 9 are logged once, redone
    # the lower learning rate is part of the run from now on, a resume included
    resumed = token_trainer(tmp_path, max_windows=24, checkpoint_every=4, max_skips=3)
    resumed.resume(tmp_path / "checkpoints" / "latest.pt")
    assert resumed.progress.rollbacks == 1
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    assert resumed.scheduler.base_lrs == [pytest.approx(5e-3)]


def test_a_run_that_cannot_recover_stops_with_a_clear_error(tmp_path):
    trainer = token_trainer(tmp_path, max_windows=30, checkpoint_every=4, max_skips=2)
    poison_gradients(trainer, bad=set(range(7, 1000)))  # updates 1-6, then never again
    with pytest.raises(TBPTTError, match="training diverged") as error:
        trainer.fit()
    message = str(error.value)
    assert "\n" not in message and "3 rollbacks" in message and "lower --lr" in message
    assert "latest.pt is the last good checkpoint, at update 4" in message
    assert trainer.progress.rollbacks == 3 and len(records(tmp_path, "rollback")) == 3
    lrs = [r["lr"] for r in records(tmp_path, "rollback")]
    assert lrs == pytest.approx([5e-3, 2.5e-3, 1.25e-3])
    last_good = checkpoints.load(tmp_path / "checkpoints" / "latest.pt")
    assert last_good["position"]["window"] == 4  # nothing after the divergence was saved
    for name, value in last_good["model"].items():  # the model is back at it, too
        assert torch.equal(trainer.model.state_dict()[name], value), name


def test_a_checkpoint_no_update_succeeded_from_is_not_returned_to(tmp_path):
    trainer = token_trainer(tmp_path, max_windows=12, checkpoint_every=4, max_skips=2)
    poison_gradients(trainer, bad={5, 6})  # the two updates after the checkpoint at 4
    trainer.fit()
    [rollback] = records(tmp_path, "rollback")
    assert rollback["window"] == 0 and rollback["from_window"] == 4


def test_a_finite_loss_that_blows_up_is_divergence(tmp_path):
    trainer = token_trainer(tmp_path, lr=1e6, max_windows=30, checkpoint_every=5)
    with pytest.raises(TBPTTError, match="training diverged"):
        trainer.fit()
    first = trainer.progress.first_loss
    assert first is not None and trainer.progress.rollbacks == 3
    kept = checkpoints.load(tmp_path / "checkpoints" / "latest.pt")
    trainer.load_state_dict(kept)
    assert trainer.evaluate(trainer.train_streams)["loss"] <= 3 * first
    assert all(r["loss"] <= 3 * first for r in records(tmp_path, "train"))


def test_without_a_blowup_limit_only_a_non_finite_loss_is_divergence():
    trainer = token_trainer(lr=1e6, max_windows=30, blowup=None)
    trainer.fit()
    assert trainer.progress.rollbacks == 0 and trainer.progress.skipped == 0


def test_frequent_checkpoints_keep_one_whose_loss_did_not_blow_up(tmp_path):
    inputs = 3 * torch.sin(torch.arange(401.0) / 5).unsqueeze(1)
    settings = {"optimizer": "sgd", "lr": 10.0, "clip_norm": None, "checkpoint_every": 1}
    trainer = series_trainer(inputs, tmp_path, **settings)
    with pytest.raises(TBPTTError, match="is the last good checkpoint"):
        trainer.fit()
    kept = checkpoints.load(tmp_path / "checkpoints" / "latest.pt")
    assert all(torch.isfinite(value).all() for value in kept["model"].values())
    first = trainer.progress.first_loss
    trainer.load_state_dict(kept)
    assert first is not None and trainer.evaluate(trainer.train_streams)["loss"] <= 3 * first


def test_rollbacks_leave_every_update_logged_once(tmp_path):
    trainer = token_trainer(tmp_path, max_windows=16, checkpoint_every=1, max_skips=2)
    poison_gradients(trainer, bad={4, 5, 9, 10})
    trainer.fit()
    assert trainer.progress.rollbacks == 2
    windows = [r["window"] for r in records(tmp_path, "train")]
    assert windows == list(range(1, 17))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))


def test_a_run_with_no_good_state_does_not_say_one_is_kept(tmp_path):
    trainer = token_trainer(tmp_path, max_windows=10, max_skips=2)
    with torch.no_grad():
        trainer.model.head.bias[0] = math.nan  # no update can succeed, from the start on
    with pytest.raises(TBPTTError, match="no checkpoint is known good") as error:
        trainer.fit()
    assert "last good checkpoint" not in str(error.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"blowup": 1.0}, "blowup must be finite and > 1"),
        ({"blowup": math.inf}, "blowup must be finite and > 1"),
        ({"max_skips": 0}, "max_skips must be >= 1"),
        ({"max_rollbacks": -1}, "max_rollbacks must be >= 0"),
        ({"rollback_lr_factor": 1.0}, "rollback_lr_factor must lie strictly between"),
        ({"rollback_lr_factor": math.nan}, "rollback_lr_factor must lie strictly between"),
        ({"lr": math.nan}, "lr must be finite"),
        ({"lr": math.inf}, "lr must be finite"),
        ({"weight_decay": math.inf}, "weight_decay must be finite"),
        ({"clip_norm": math.nan}, "clip_norm must be finite"),
    ],
)
def test_settings_that_cannot_train_are_refused(settings, message):
    with pytest.raises(TBPTTError, match=message):
        TrainConfig(**settings)


def test_a_run_stopped_in_a_streak_of_skips_rolls_back_where_an_unstopped_one_does(tmp_path):
    settings = {"max_windows": 6, "checkpoint_every": 100, "max_skips": 3}
    whole = token_trainer(**settings)
    poison_gradients(whole, bad={3, 4, 5})  # updates 1-2 succeed, then 3 fail: roll back
    whole.fit()
    [want] = [record for record in whole.log.records if record["kind"] == "rollback"]

    stopped = token_trainer(tmp_path / "run", **settings)
    calls = poison_gradients(stopped, bad={3, 4})
    stopped.model.head.bias.register_hook(
        lambda grad: os.kill(os.getpid(), signal.SIGINT) if len(calls) == 4 else None
    )
    stopped.fit()  # stopped after two skips in a row
    resumed = token_trainer(tmp_path / "run", **settings)
    poison_gradients(resumed, bad={1})  # the third in a row
    resumed.resume(tmp_path / "run" / "checkpoints" / "latest.pt")
    resumed.fit()
    [got] = records(tmp_path / "run", "rollback")  # to its checkpoint at the stop
    assert got["from_window"] == want["from_window"] == 2
