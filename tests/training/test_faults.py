"""A run killed with SIGKILL, or stopped with SIGTERM or SIGINT, at any moment resumes
to the parameters and the metrics records of a run never interrupted: checkpoints
are written atomically, and hold every random state and the running training loss."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import tbptt
from tbptt.data import Streams
from tbptt.training import TrainConfig, Trainer, checkpoints
from tbptt.training.reporting import read_records
from tests.resumable_run import WINDOWS, make_trainer

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10
TIMING = ("seconds", "tokens_per_second", "peak_memory_mb")
"""Record fields that measure the machine, not the run."""


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in records]


def assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bit-identical, not merely close


def run_until_killed(
    run_dir: Path, window: int, delay: float, number: signal.Signals = signal.SIGKILL
) -> None:
    """Start the run in a subprocess and send it signal ``number`` ``delay`` seconds
    after it reports update ``window`` (inside the next update, a log write or a
    checkpoint write). SIGKILL ends it at once; SIGTERM and SIGINT stop it after the
    batch, with a checkpoint."""
    command = [sys.executable, "-m", "tests.resumable_run", str(run_dir)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == f"window {window}":
                time.sleep(delay)
                process.send_signal(number)  # SIGKILL: no handler runs, no cleanup
                break
        else:
            pytest.fail(f"the run ended before update {window}")
        process.wait(timeout=60)
    if number == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 0  # it stopped itself: the script saves final.pt


def finish_in_process(run_dir: Path, expected_records: list[dict]) -> dict:
    """Resume the run here (or start it afresh if it saved nothing) to the end; its
    ``metrics.jsonl`` must hold ``expected_records``."""
    trainer = make_trainer(run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    if latest.exists():
        assert checkpoints.load(latest)["position"]["window"] <= WINDOWS  # whole, loadable
        trainer.resume(latest)
    trainer.fit()
    assert trainer.progress.updates == WINDOWS
    leftovers = [path.name for path in run_dir.rglob(".*.tmp")]
    assert leftovers == []  # a resume clears what a write cut short left
    records = without_timing(read_records(run_dir / "metrics.jsonl"))
    assert records == expected_records  # record by record, the ones spanning the stop too
    return trainer.model.state_dict()


@pytest.fixture
def one_thread():
    """One intra-op thread, as in the subprocess: the same float reductions, and no
    threads fighting over a busy machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted():
    """The parameters and records of the run never stopped."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    whole = make_trainer(None)
    whole.fit()
    torch.set_num_threads(threads)
    return whole.model.state_dict(), without_timing(whole.log.records)


def test_sigkill_at_ten_random_moments_each_resumes_exactly(tmp_path, one_thread, uninterrupted):
    expected, records = uninterrupted

    draw = random.Random(8)
    for number in range(KILLS):
        run_dir = tmp_path / f"run{number}"
        run_until_killed(run_dir, draw.randrange(1, WINDOWS - 4), draw.uniform(0.0, 0.01))
        if number == 0:  # once end to end: the script resumes itself
            done = subprocess.run(
                [sys.executable, "-m", "tests.resumable_run", str(run_dir), "--resume"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            final = torch.load(run_dir / "final.pt", weights_only=True)
            assert_same_parameters(final, expected)
        else:
            assert_same_parameters(finish_in_process(run_dir, records), expected)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_at_random_moments_resumes_to_the_same_records(
    tmp_path, one_thread, uninterrupted, number
):
    expected, records = uninterrupted
    draw = random.Random(int(number))
    window = draw.randrange(1, WINDOWS - 4)
    run_until_killed(tmp_path, window, draw.uniform(0.0, 0.01), number)
    saved = checkpoints.load(tmp_path / "checkpoints" / "latest.pt")["position"]["window"]
    assert saved >= window  # it stopped after a batch, with a checkpoint
    assert_same_parameters(finish_in_process(tmp_path, records), expected)


def test_a_record_that_spans_a_stop_averages_every_window_since_the_last(tmp_path):
    whole = make_trainer(None, log_every=4)
    whole.fit()
    first = make_trainer(tmp_path, log_every=4)

    def stop_at_the_first_evaluation(record: dict) -> None:
        if record["kind"] == "eval":  # update 7: three updates since the last record
            os.kill(os.getpid(), signal.SIGINT)

    first.log.callbacks.append(stop_at_the_first_evaluation)
    assert first.fit()["interrupted"] == 1.0 and first.progress.updates == 7
    second = make_trainer(tmp_path, log_every=4)
    second.resume(tmp_path / "checkpoints" / "latest.pt")
    second.fit()
    resumed = without_timing(read_records(tmp_path / "metrics.jsonl"))
    assert resumed == without_timing(whole.log.records)


class Killed(BaseException):
    """A kill just after a record reached ``metrics.jsonl`` (records are written
    before the callbacks see them), before the next checkpoint."""


def epoch_trainer(run_dir: Path | None) -> Trainer:
    """Evaluated once per epoch (eval_every=0), with a checkpoint at the update that
    ends each epoch, before that epoch's evaluation: 20 updates an epoch."""
    tokens = torch.randint(0, 12, (241,), generator=torch.Generator().manual_seed(0))
    train = Streams(tokens[:-1], tokens[1:], 4, 3)
    validation = Streams.language_model(tokens[:60], 2, 6)
    torch.manual_seed(0)
    model = tbptt.models.GRU(8, vocab_size=12)
    config = TrainConfig(k1=3, epochs=3, log_every=4, eval_every=0, checkpoint_every=5)
    return Trainer(
        model, tbptt.losses.cross_entropy, train, config, validation=validation, run_dir=run_dir
    )


@pytest.mark.parametrize("window", [20, 40])
def test_a_kill_after_an_epochs_evaluation_resumes_without_repeating_it(
    tmp_path, one_thread, window
):
    whole = epoch_trainer(None)
    whole.fit()
    first = epoch_trainer(tmp_path)

    def kill_after_the_evaluation(record: dict) -> None:
        if record["kind"] == "eval" and record["window"] == window:
            raise Killed

    first.log.callbacks.append(kill_after_the_evaluation)
    with pytest.raises(Killed):
        first.fit()
    saved = checkpoints.load(tmp_path / "checkpoints" / "latest.pt")["position"]
    assert saved["window"] == window and saved["epoch"] == window // 20 - 1  # before the eval
    second = epoch_trainer(tmp_path)
    second.resume(tmp_path / "checkpoints" / "latest.pt")
    second.fit()
    resumed = without_timing(read_records(tmp_path / "metrics.jsonl"))
    assert resumed == without_timing(whole.log.records)  # one evaluation per epoch, not two
