"""A ``tbptt train`` stopped at any moment, start-up included, leaves either nothing
or a run that ``--resume`` continues to the records and parameters of a run never
stopped; it exits with 130 only when there is something to resume, and says so."""

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

from tbptt.cli import commands
from tbptt.cli import main as cli_main
from tbptt.cli.main import main
from tbptt.files import LOCK
from tbptt.training import checkpoints
from tbptt.training.reporting import read_records
from tbptt.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--hidden-size", "8", "--num-layers", "1", "--k1", "8", "--batch-size", "2"]
RUN = [*SMALL, "--max-windows", "12", "--log-every", "5", "--checkpoint-every", "4", "--quiet"]
TIMING = ("seconds", "tokens_per_second", "peak_memory_mb")


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join("abcde \n"[(i * 7 + i // 5) % 7] for i in range(2000)))
    return path


def outcome(run_dir: Path) -> tuple[list[dict], dict]:
    """The records (less timing) and final parameters of a finished run."""
    records = [
        {k: v for k, v in r.items() if k not in TIMING}
        for r in read_records(run_dir / "metrics.jsonl")
    ]
    return records, checkpoints.load(run_dir / "checkpoints" / "latest.pt")["model"]


def assert_same(a: tuple[list[dict], dict], b: tuple[list[dict], dict]) -> None:
    assert a[0] == b[0]
    assert all(torch.equal(a[1][name], b[1][name]) for name in a[1])


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


real_acquire = commands.FolderLock.acquire


def acquire_while_sigterm_arrives(lock):
    os.kill(os.getpid(), signal.SIGTERM)  # held back while the run directory is claimed
    real_acquire(lock)


@pytest.mark.parametrize(
    "where",
    [
        (commands, "build_data"),
        (commands.FolderLock, "acquire", acquire_while_sigterm_arrives),
        (commands, "make_trainer"),
        (checkpoints, "save"),  # inside the first checkpoint's write
    ],
    ids=["reading the data", "locking", "building the trainer", "the first checkpoint"],
)
def test_a_stop_before_the_first_checkpoint_leaves_nothing_and_says_so(
    tmp_path, corpus, capsys, monkeypatch, where
):
    monkeypatch.setattr(*where[:2], where[2] if len(where) > 2 else interrupt)
    run_dir = tmp_path / "run"
    code = main(["train", "--text", str(corpus), *RUN, "--run-dir", str(run_dir)])
    assert code == 1
    assert "nothing to resume; run the command again" in capsys.readouterr().err
    assert not run_dir.exists()


@pytest.mark.parametrize("where", ["options_of", "resolve_file"])
def test_a_stop_while_torch_loads_or_the_config_is_read_leaves_nothing_and_says_so(
    tmp_path, corpus, capsys, monkeypatch, where
):
    monkeypatch.setattr(cli_main, where, interrupt)  # before any file is written
    run_dir = tmp_path / "run"
    assert main(["train", "--text", str(corpus), *RUN, "--run-dir", str(run_dir)]) == 1
    assert "nothing to resume; run the command again" in capsys.readouterr().err
    assert not run_dir.exists()


def test_a_stop_before_a_resume_reaches_its_run_says_how_to_resume(
    tmp_path, corpus, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    assert main(["train", "--text", str(corpus), *RUN, "--run-dir", str(run_dir)]) == 0
    monkeypatch.setattr(cli_main, "options_of", interrupt)
    assert main(["train", "--resume", str(run_dir), "--max-windows", "20"]) == 130
    assert f"continue with: tbptt train --resume {run_dir}" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 1
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "where",
    [(commands, "write_config"), (Trainer, "fit")],
    ids=["writing the config", "starting to train"],
)
def test_a_stop_after_the_first_checkpoint_resumes_to_the_unstopped_run(
    tmp_path, corpus, capsys, monkeypatch, where
):
    whole = tmp_path / "whole"
    assert main(["train", "--text", str(corpus), *RUN, "--run-dir", str(whole)]) == 0
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(*where, interrupt)
        code = main(["train", "--text", str(corpus), *RUN, "--run-dir", str(run_dir)])
    assert code == 130
    assert f"continue with: tbptt train --resume {run_dir}" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert_same(outcome(run_dir), outcome(whole))


def test_sigterm_while_training_exits_130_and_resumes_to_the_unstopped_run(tmp_path, corpus):
    longer = [*SMALL, "--max-windows", "80", "--log-every", "1", "--checkpoint-every", "7"]
    whole = tmp_path / "whole"
    assert main(["train", "--text", str(corpus), *longer, "--quiet", "--run-dir", str(whole)]) == 0
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "tbptt", "train", "--text", str(corpus), *longer]
    command += ["--jsonl", "--run-dir", str(run_dir)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        process.stdout.readline()  # its first record: training has begun
        time.sleep(random.Random(0).uniform(0.0, 0.05))
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"tbptt train --resume {run_dir}".encode() in err
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert_same(outcome(run_dir), outcome(whole))


def train_command(corpus: Path, run_dir: Path) -> list[str]:
    """``tbptt train`` of :data:`RUN` in a subprocess."""
    return [
        sys.executable,
        "-m",
        "tbptt",
        "train",
        "--text",
        str(corpus),
        *RUN,
        "--run-dir",
        str(run_dir),
    ]


def test_a_run_directory_a_kill_in_start_up_left_is_started_afresh(tmp_path, corpus, capsys):
    whole = tmp_path / "whole"
    assert main(["train", "--text", str(corpus), *RUN, "--run-dir", str(whole)]) == 0
    run_dir = tmp_path / "run"  # SIGKILL after the lock, inside the first checkpoint's write
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / LOCK).write_text("999999999\n")  # a dead holder: the OS let its lock go
    (run_dir / "checkpoints" / ".latest.pt.0123456789ab.tmp").write_bytes(b"half")
    assert main(["train", "--text", str(corpus), *RUN, "--run-dir", str(run_dir)]) == 0
    assert list(run_dir.rglob(".*.tmp")) == [] and not (run_dir / LOCK).exists()
    assert_same(outcome(run_dir), outcome(whole))


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_stop_at_random_moments_from_start_up_on_leaves_nothing_or_a_run_that_resumes(
    tmp_path, corpus, number
):
    """Stops drawn over the command's whole life, most of it start-up (importing torch,
    reading the data, claiming the run directory), the rest training and reporting.
    What a kill leaves is a run ``--resume`` continues, or one the command run again
    starts afresh."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    began = time.monotonic()
    done = subprocess.run(train_command(corpus, whole), cwd=ROOT, env=environment, timeout=120)
    assert done.returncode == 0
    life = time.monotonic() - began
    draw = random.Random(int(number))
    for attempt in range(3):
        run_dir = tmp_path / f"run{attempt}"
        with subprocess.Popen(
            train_command(corpus, run_dir), cwd=ROOT, env=environment, stderr=subprocess.PIPE
        ) as process:
            time.sleep(draw.uniform(0.0, life))
            process.send_signal(number)
            _, err = process.communicate(timeout=120)
        if process.returncode == 130:  # something to resume, and it says how
            assert f"tbptt train --resume {run_dir}".encode() in err
            assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
        elif process.returncode == 1:  # stopped before its first checkpoint: says so
            assert b"nothing to resume; run the command again" in err
        else:  # finished first, killed, or stopped before Python ran tbptt's handler
            assert process.returncode in (0, -number), err
        latest = run_dir / "checkpoints" / "latest.pt"
        if run_dir.exists() and not latest.exists():  # a kill left a lock or a .tmp file
            assert number == signal.SIGKILL
            assert main(["train", "--text", str(corpus), *RUN, "--run-dir", str(run_dir)]) == 0
        elif latest.exists() and checkpoints.load(latest)["position"]["window"] < 12:
            assert number == signal.SIGKILL  # a stop says 130 and was resumed above
            assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
        if run_dir.exists():  # nothing, or a run that ends as the unstopped one
            assert_same(outcome(run_dir), outcome(whole))


def test_a_quiet_run_stopped_in_training_still_says_how_to_continue(tmp_path, corpus):
    run_dir = tmp_path / "run"
    command = train_command(corpus, run_dir)
    command[command.index("12")] = "100000"  # --max-windows: it trains until stopped
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.PIPE) as process:
        latest = run_dir / "checkpoints" / "latest.pt"
        deadline = time.monotonic() + 120
        while not latest.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"continue with: tbptt train --resume {run_dir}".encode() in err
