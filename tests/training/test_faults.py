"""A run killed with SIGKILL at any moment resumes to the parameters of a run never
interrupted: checkpoints are written atomically, and hold every random state."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tbptt.training import checkpoints
from tests.resumable_run import WINDOWS, make_trainer

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10


def assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bit-identical, not merely close


def run_until_killed(run_dir: Path, window: int, delay: float) -> None:
    """Start the run in a subprocess and SIGKILL it ``delay`` seconds after it reports
    update ``window`` (inside the next update, a log write or a checkpoint write)."""
    command = [sys.executable, "-m", "tests.resumable_run", str(run_dir)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == f"window {window}":
                time.sleep(delay)
                process.kill()  # SIGKILL: no handler runs, no cleanup
                break
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the run ended before update {window}"


def finish_in_process(run_dir: Path) -> dict:
    """Resume the run here (or start it afresh if it saved nothing) to the end."""
    trainer = make_trainer(run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    if latest.exists():
        assert checkpoints.load(latest)["position"]["window"] <= WINDOWS  # whole, loadable
        trainer.resume(latest)
    trainer.fit()
    assert trainer.window == WINDOWS
    leftovers = [path.name for path in run_dir.rglob(".*.tmp")]
    assert leftovers == []  # a resume clears what a write cut short left
    return trainer.model.state_dict()


@pytest.fixture
def one_thread():
    """One intra-op thread, as in the subprocess: the same float reductions, and no
    threads fighting over a busy machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigkill_at_ten_random_moments_each_resumes_exactly(tmp_path, one_thread):
    whole = make_trainer(None)
    whole.fit()
    expected = whole.model.state_dict()

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
            assert_same_parameters(finish_in_process(run_dir), expected)
