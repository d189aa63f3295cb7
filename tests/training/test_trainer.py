"""The trainer learns, logs, checkpoints atomically and resumes exactly."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

import tbptt
from tbptt import TBPTTError
from tbptt.data import Batch, Streams, tasks
from tbptt.training import checkpoints
from tbptt.training.trainer import RANDOM_BATCH_WINDOWS, TrainConfig, Trainer
from tests.resumable_run import WINDOWS, make_trainer

ROOT = Path(__file__).resolve().parents[1]


def assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bit-identical, not merely close


def cycle_trainer(run_dir: Path | None) -> tuple[Trainer, Streams]:
    tokens = torch.arange(3000) % 7  # a cycle: perfectly predictable
    train = Streams.language_model(tokens, 4, 8)
    torch.manual_seed(0)
    model = tbptt.models.LSTM(16, vocab_size=7)
    config = TrainConfig(k1=8, epochs=2, lr=1e-2, log_every=10)
    trainer = Trainer(
        model, tbptt.losses.cross_entropy, train, config, validation=train, run_dir=run_dir
    )
    return trainer, train


def test_the_loss_falls_on_a_learnable_stream():
    trainer, train = cycle_trainer(None)
    before = trainer.evaluate(train)["loss"]
    after = trainer.fit()["loss"]
    assert after < 0.2 * before


def test_a_run_directory_holds_metrics_checkpoints_and_a_learning_curve(tmp_path):
    trainer, _ = cycle_trainer(tmp_path)
    trainer.fit()
    assert {p.name for p in tmp_path.iterdir()} >= {
        "metrics.jsonl",
        "metrics.csv",
        "learning_curves.png",
        "checkpoints",
    }
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "eval"}
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_does_not_depend_on_the_truncation():
    tokens = torch.randint(0, 5, (600,), generator=torch.Generator().manual_seed(0))
    streams = Streams.language_model(tokens, 3, 10)
    losses = []
    for k1 in (2, 10, None):
        torch.manual_seed(0)
        model = tbptt.models.GRU(8, vocab_size=5)
        trainer = Trainer(model, tbptt.losses.cross_entropy, streams, TrainConfig(k1=k1))
        losses.append(trainer.evaluate(streams)["loss"])
    assert losses[0] == losses[1] == losses[2]


def test_a_batch_slices_into_consecutive_views():
    inputs, targets = torch.arange(10).view(10, 1), torch.arange(10, 20).view(10, 1)
    batch = Batch(inputs, targets, torch.zeros(10, 1, dtype=torch.bool), torch.ones(10, 1).bool())
    pieces = list(batch.slices(4))
    assert [piece.inputs.shape[0] for piece in pieces] == [4, 4, 2]
    for name in ("inputs", "targets", "resets", "mask"):
        joined = torch.cat([getattr(piece, name) for piece in pieces])
        assert torch.equal(joined, getattr(batch, name)), name
    assert [piece.inputs.shape[0] for piece in batch.slices(None)] == [10]
    with pytest.raises(TBPTTError, match="at least 1 step"):
        list(batch.slices(0))


def test_the_plateau_schedule_divides_the_rate_after_each_evaluation_that_does_not_improve():
    trainer = make_trainer(
        None, schedule="plateau", lr=0.08, eval_every=1, max_windows=6, log_every=100,
        plateau_factor=4.0, plateau_min_lr=0.004,
    )  # fmt: skip
    scripted, seen = iter([3.0, 2.0, 2.5, 2.2, 1.0, 1.5]), []

    def evaluate(streams):
        seen.append(trainer.optimizer.param_groups[0]["lr"])  # the rate before this one
        return {"loss": next(scripted)}

    trainer.evaluate = evaluate
    trainer.fit()
    # better, better, worse (/4), worse than the best 2.0 (/4), better, worse (floor)
    assert seen == pytest.approx([0.08, 0.08, 0.08, 0.02, 0.005, 0.005], rel=1e-12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.004, rel=1e-12)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"schedule": "plateau", "plateau_factor": 1.0}, "plateau_factor divides"),
        ({"schedule": "plateau", "plateau_min_lr": -1.0}, "plateau_min_lr must be"),
    ],
)
def test_impossible_plateau_settings_are_refused(settings, message):
    with pytest.raises(TBPTTError, match=message):
        TrainConfig(**settings)


def test_the_plateau_schedule_needs_validation_streams():
    tokens = torch.arange(300) % 5
    with pytest.raises(TBPTTError, match="plateau schedule follows the validation loss"):
        Trainer(
            tbptt.models.GRU(4, vocab_size=5),
            tbptt.losses.cross_entropy,
            Streams.language_model(tokens, 2, 5),
            TrainConfig(k1=5, schedule="plateau"),
        )


def test_regression_evaluation_reports_the_loss_as_mse_and_the_mae():
    data = tasks.adding(32, 20, seed=0)
    streams = Streams(
        data.inputs.transpose(0, 1).reshape(-1, 2),
        data.targets.transpose(0, 1).reshape(-1, 1),
        32,
        20,
        valid=data.mask.t().reshape(-1),
        starts=torch.arange(640) % 20 == 0,
    )
    model = tbptt.models.LSTM(8, input_size=2, output_size=1)
    trainer = Trainer(model, tbptt.losses.mse, streams, TrainConfig(k1=20), metrics="regression")
    metrics = trainer.evaluate(streams)
    assert metrics["loss"] == metrics["mse"] and metrics["mae"] > 0


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"k1_std": 1.0, "recompute_activations": True},
        {"advise_every": 4},
        {"schedule": "plateau", "eval_every": 2, "lr": 0.05, "plateau_factor": 2.0},
        {"optimizer": "ntasgd", "nonmono": 1, "eval_every": 2, "lr": 0.5},  # averages from 7
    ],
    ids=["fixed", "random-k1-checkpointed", "k2-advised", "plateau", "ntasgd"],
)
def test_a_run_stopped_by_a_signal_resumes_to_identical_parameters(tmp_path, overrides, number):
    uninterrupted = make_trainer(tmp_path / "whole", **overrides)
    uninterrupted.fit()

    stopped = make_trainer(tmp_path / "run", **overrides)
    stopped.log.callbacks.append(lambda r: r["window"] == 17 and os.kill(os.getpid(), number))
    result = stopped.fit()
    assert result["interrupted"] == 1.0 and stopped.progress.updates == 17

    resumed = make_trainer(tmp_path / "run", **overrides)
    resumed.resume(tmp_path / "run" / "checkpoints" / "latest.pt")
    resumed.fit()
    assert resumed.progress.updates == WINDOWS
    assert_same_parameters(resumed.model.state_dict(), uninterrupted.model.state_dict())
    assert logged_windows(tmp_path / "run") == logged_windows(tmp_path / "whole")
    if uninterrupted.averaging is not None:  # NT-ASGD's average, started before the stop
        assert (
            stopped.averaging.started and resumed.averaging.losses == uninterrupted.averaging.losses
        )
        assert_same_parameters(resumed.averaging.average, uninterrupted.averaging.average)
    if not overrides:  # a batch of k1 steps: one record per window, once each
        assert logged_windows(tmp_path / "run") == list(range(1, WINDOWS + 1))


def test_a_run_stopped_between_two_windows_of_a_batch_resumes_to_identical_parameters(tmp_path):
    def make(run_dir):
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, 12, (1201,), generator=gen)
        train = Streams.language_model(tokens, 4, 12)  # 4 windows of k1 = 3 per batch
        torch.manual_seed(0)
        model = tbptt.models.GRU(16, vocab_size=12, dropout=0.2)
        config = TrainConfig(k1=3, k2=5, max_windows=30, log_every=1, checkpoint_every=5)
        return Trainer(model, tbptt.losses.cross_entropy, train, config, run_dir=run_dir)

    uninterrupted = make(tmp_path / "whole")
    uninterrupted.fit()
    stopped = make(tmp_path / "run")
    stopped.log.callbacks.append(
        lambda r: r["window"] == 17 and os.kill(os.getpid(), signal.SIGINT)
    )
    assert stopped.fit()["interrupted"] == 1.0
    latest = checkpoints.load(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert latest["position"] == {"epoch": 0, "batch": 4, "window": 17}
    assert latest["runner"]["chunk"]["done"] == 1  # the fifth batch's first window done
    resumed = make(tmp_path / "run")
    resumed.resume(tmp_path / "run" / "checkpoints" / "latest.pt")
    resumed.fit()
    assert resumed.progress.updates == 30
    assert_same_parameters(resumed.model.state_dict(), uninterrupted.model.state_dict())
    assert logged_windows(tmp_path / "run") == list(range(1, 31))


def logged_windows(run_dir: Path) -> list[int]:
    """The window of every training record in a run's metrics."""
    return [
        json.loads(line)["window"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"train"' in line
    ]


def test_checkpoints_refuse_damage_code_and_foreign_files(tmp_path):
    trainer = make_trainer(tmp_path, max_windows=3)
    trainer.fit()
    good = tmp_path / "checkpoints" / "latest.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(TBPTTError, match="damaged or truncated"):
        checkpoints.load(truncated)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    malicious = tmp_path / "malicious.pt"
    torch.save({"format": "tbptt-checkpoint", "version": 1, "x": Exploit()}, malicious)
    with pytest.raises(TBPTTError, match="could run code"):
        checkpoints.load(malicious)
    assert not (tmp_path / "pwned").exists()

    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(TBPTTError, match="not a tbptt checkpoint"):
        checkpoints.load(foreign)
    with pytest.raises(TBPTTError, match="no such checkpoint"):
        checkpoints.load(tmp_path / "missing.pt")


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, max_windows=3)
    trainer.fit()
    path = tmp_path / "checkpoints" / "latest.pt"
    before = path.read_bytes()

    trainer.progress.updates += 1  # a new state to save

    def disk_full(descriptor):  # the data were written, but cannot reach the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        trainer.save("latest")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt", "latest.pt"]  # no temp
    monkeypatch.undo()
    assert checkpoints.load(path)["position"]["window"] == 3  # the previous one, whole


def test_patience_stops_a_run_that_no_longer_improves():
    trainer = make_trainer(None, lr=1e-9, eval_every=1, patience=2, max_windows=None, epochs=5)
    trainer.fit()
    assert trainer.progress.stale_evals == 2 and trainer.progress.updates < 10


def test_random_truncation_scales_each_update_by_its_k1():
    tokens = torch.randint(0, 6, (401,), generator=torch.Generator().manual_seed(0))
    train = Streams.language_model(tokens, 2, 40)
    config = TrainConfig(k1=6, k2=8, k1_std=2.0, optimizer="sgd", lr=0.5, clip_norm=None, seed=3)
    torch.manual_seed(0)
    expected = tbptt.models.GRU(8, vocab_size=6)
    runner = tbptt.Runner(
        expected, tbptt.losses.cross_entropy, tbptt.RandomTruncation(6, 2.0, seed=3), 8
    )
    scales = []
    for batch in train.batches(0):
        for window in runner.windows(batch.inputs, batch.targets, resets=batch.resets):
            expected.zero_grad()
            window.loss.backward()
            scales.append(window.lr_scale)
            with torch.no_grad():
                for p in expected.parameters():
                    p -= 0.5 * window.lr_scale * p.grad
    torch.manual_seed(0)
    trainer = Trainer(tbptt.models.GRU(8, vocab_size=6), tbptt.losses.cross_entropy, train, config)
    trainer.fit()
    assert len(set(scales)) > 3 and trainer.progress.updates == len(scales)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.5  # restored after each update
    for got, want in zip(trainer.model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_random_truncation_batches_hold_several_windows_and_intervals_are_kept(tmp_path):
    # intervals longer than a batch's windows (about 8), so each multiple has its batch
    config = TrainConfig(k1=5, k1_std=1.0, epochs=2, eval_every=17, log_every=13, seed=1)
    config = dataclasses.replace(config, checkpoint_every=10, schedule="cosine")
    assert config.batch_steps(1000) == 5 * RANDOM_BATCH_WINDOWS
    tokens = torch.randint(0, 6, (2 * 40 * 6 + 1,), generator=torch.Generator().manual_seed(0))
    train = Streams.language_model(tokens, 2, config.batch_steps(1000))
    torch.manual_seed(0)
    model = tbptt.models.GRU(8, vocab_size=6)
    trainer = Trainer(
        model, tbptt.losses.cross_entropy, train, config, validation=train, run_dir=tmp_path
    )
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r["window"] for r in records if r["kind"] == "eval"]
    assert trainer.progress.updates > 2 * len(train)  # several windows per batch
    due = trainer.progress.updates // 17  # one evaluation at each multiple of 17
    assert [w // 17 for w in evaluated[:due]] == list(range(1, due + 1))
    assert evaluated[-1] == trainer.progress.updates  # and the final model's
    logged = [r["window"] // 13 for r in records if r["kind"] == "train"]
    assert logged == list(range(1, trainer.progress.updates // 13 + 1))
    assert trainer.optimizer.param_groups[0]["lr"] < 0.05 * config.lr  # cosine reached ~0


def test_checkpointed_training_takes_the_same_steps():
    tokens = torch.randint(0, 6, (401,), generator=torch.Generator().manual_seed(0))
    train = Streams.language_model(tokens, 2, 40)
    trained = []
    for settings in (
        {},
        {"recompute_activations": True},
        {"recompute_activations": True, "recompute_segment": 3},
    ):
        torch.manual_seed(0)
        model = tbptt.models.LSTM(8, vocab_size=6, num_layers=2)
        config = TrainConfig(k1=None, lr=1e-2, **settings)
        Trainer(model, tbptt.losses.cross_entropy, train, config).fit()
        trained.append(model.state_dict())
    for other in trained[1:]:
        for name in trained[0]:
            torch.testing.assert_close(other[name], trained[0][name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"k1": None, "k1_std": 2.0}, "k1_std needs a k1"),
        ({"k1_std": -1.0}, "k1_std needs a k1 and must be >= 0"),
        ({"k1_std": math.inf}, "k1_std needs a k1 and must be >= 0 and finite, got inf"),
        ({"recompute_segment": 4}, "needs recompute_activations"),
        ({"recompute_activations": True, "recompute_segment": 0}, ">= 1 steps"),
        ({"k1": 4, "k2": 2}, "k1=4 > k2=2"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"schedule": "cyclic"}, "schedule must be one of"),
        ({"clip_norm": 0.0}, "clip_norm must be finite and > 0"),
        ({"max_windows": 0}, "max_windows must be >= 1"),
    ],
)
def test_bad_training_settings_are_refused(settings, message):
    with pytest.raises(TBPTTError, match=message):
        TrainConfig(**settings)


def test_a_scaled_update_leaves_the_learning_rate_to_the_schedule():
    tokens = torch.randint(0, 6, (201,), generator=torch.Generator().manual_seed(0))
    train = Streams.language_model(tokens, 2, 40)
    config = TrainConfig(k1=6, k1_std=2.0, optimizer="sgd", lr=0.5, seed=3)
    trainer = Trainer(tbptt.models.GRU(8, vocab_size=6), tbptt.losses.cross_entropy, train, config)
    # a schedule that scales the current rate (LambdaLR would recompute it from the base)
    trainer.scheduler = torch.optim.lr_scheduler.MultiplicativeLR(trainer.optimizer, lambda _: 1.0)
    trainer.train_batch(next(iter(train.batches(0))))
    assert trainer.progress.updates > 3  # several windows, each of its own length
    assert trainer.optimizer.param_groups[0]["lr"] == 0.5


def test_the_logged_training_loss_weights_each_window_by_its_count():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 6, (121,), generator=gen)
    valid = torch.ones(120, dtype=torch.bool)
    valid[torch.arange(120) % 30 >= 10] = False  # windows of 2 streams x 5 steps: 10 or 0..5
    valid[torch.arange(120) % 30 == 12] = True
    train = Streams(tokens[:-1], tokens[1:], 2, 5, valid=valid)
    config = TrainConfig(k1=5, optimizer="sgd", lr=1e-12, log_every=1000, clip_norm=None)
    torch.manual_seed(0)
    trainer = Trainer(tbptt.models.GRU(8, vocab_size=6), tbptt.losses.cross_entropy, train, config)
    # at (nearly) fixed parameters, one epoch's windows see every valid step once, with
    # the state carried: the masked mean over the epoch is the evaluation loss
    expected = trainer.evaluate(train)["loss"]
    logged = trainer.fit()["loss"]
    assert logged == pytest.approx(expected, rel=1e-6)


def test_classification_accuracy_counts_valid_elements_only():
    class AlwaysZero(torch.nn.Module):
        """Predicts class 0 at every step."""

        def __init__(self) -> None:
            super().__init__()
            self.logits = torch.nn.Parameter(torch.tensor([1.0, 0.0, 0.0]))

        def forward(self, inputs, state=None):
            state = inputs.new_zeros(inputs.shape[1], 1, dtype=torch.float32)
            return self.logits.expand(*inputs.shape[:2], 3), state

    targets = torch.tensor([0, 1, 2, 0, 1, 0, 0, 0, 0, 2, 0, 0])
    valid = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0], dtype=torch.bool)  # pads: 0
    streams = Streams(targets, targets, 2, 3, valid=valid)
    config = TrainConfig(k1=3)
    trainer = Trainer(
        AlwaysZero(), tbptt.losses.cross_entropy, streams, config, metrics="classification"
    )
    expected = float(((targets == 0) & valid).sum() / valid.sum())  # 3 of 7
    assert trainer.evaluate(streams)["accuracy"] == pytest.approx(expected)


def test_a_cosine_schedule_spans_every_update_of_the_run():
    tokens = torch.randint(0, 6, (41,), generator=torch.Generator().manual_seed(0))
    train = Streams.language_model(tokens, 2, 5)  # batches of 5 steps: windows of 2, 2, 1
    config = TrainConfig(k1=2, lr=1.0, schedule="cosine", log_every=1, blowup=None)
    trainer = Trainer(tbptt.models.GRU(8, vocab_size=6), tbptt.losses.cross_entropy, train, config)
    rates = {}  # one train record per update (log_every=1), three per batch

    def note(record):
        if record["kind"] == "train":
            rates[record["window"]] = record["lr"]

    trainer.log.callbacks.append(note)
    trainer.fit()
    updates = trainer.progress.updates
    assert updates == 4 * 3 and list(rates) == list(range(1, 13))
    expected = {t: 0.5 * (1 + math.cos(math.pi * t / updates)) for t in rates}
    assert rates == pytest.approx(expected, abs=1e-12)  # zero at the last update, not before


def test_the_old_recompute_setting_names_still_work_with_one_warning_line_each(caplog):
    with caplog.at_level("WARNING", logger="tbptt.training.config"):
        config = TrainConfig(checkpoint_activations=True, checkpoint_segment=3)
    assert (config.recompute_activations, config.recompute_segment) == (True, 3)
    assert (config.checkpoint_activations, config.checkpoint_segment) == (None, None)
    assert [record.getMessage() for record in caplog.records] == [
        "checkpoint_activations is deprecated: it is now recompute_activations",
        "checkpoint_segment is deprecated: it is now recompute_segment",
    ]
