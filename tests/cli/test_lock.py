"""One process at a time writes a run: a second writer is refused with one line that
names the holder's PID, and the OS frees the lock when the holder dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tbptt.cli.main import main
from tbptt.errors import TBPTTError
from tbptt.files import LOCK, FolderLock

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--hidden-size", "8", "--num-layers", "1", "--k1", "8", "--batch-size", "2", "--quiet"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join("abcde \n"[(i * 7 + i // 5) % 7] for i in range(2000)))
    return path


def start_writer(arguments: list[str]) -> subprocess.Popen:
    """``tbptt`` in a subprocess."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tbptt", *arguments]
    return subprocess.Popen(command, cwd=ROOT, env=environment)


def pause_when_locked(process: subprocess.Popen, run_dir: Path) -> None:
    """Pause ``process`` (SIGSTOP) as soon as it holds the lock of ``run_dir``."""
    lock = run_dir / LOCK
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if lock.exists() and lock.read_text().strip() == str(process.pid):
            process.send_signal(signal.SIGSTOP)
            return
        time.sleep(0.002)
    pytest.fail(f"the writer never held the lock (exit {process.returncode})")


def second_writer_is_refused(arguments: list[str], holder: int, capsys) -> None:
    assert main(arguments) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert f"process {holder} is writing this run" in message


def test_a_second_lock_on_a_folder_names_the_holder_and_a_release_frees_it(tmp_path):
    with FolderLock(tmp_path), pytest.raises(TBPTTError, match=f"process {os.getpid()} is"):
        FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path):  # released: free again
        pass
    assert not (tmp_path / LOCK).exists()


def test_a_killed_holder_leaves_the_lock_free(tmp_path):
    child = os.fork()
    if child == 0:  # the holder: takes the lock and dies without releasing it
        FolderLock(tmp_path).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(child, 0)
    assert (tmp_path / LOCK).read_text().strip() == str(child)  # nothing cleaned up
    with FolderLock(tmp_path):  # but the OS let go
        pass


def test_two_new_runs_into_one_run_dir_exactly_one_proceeds(tmp_path, corpus, capsys):
    run_dir = tmp_path / "run"
    arguments = ["train", "--text", str(corpus), *TRAIN, "--run-dir", str(run_dir)]
    with start_writer([*arguments, "--max-windows", "20"]) as first:
        pause_when_locked(first, run_dir)
        try:
            second_writer_is_refused([*arguments, "--max-windows", "3"], first.pid, capsys)
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["window"] == 20  # the first run's, whole: the second wrote nothing


def test_a_resume_of_a_run_being_written_changes_nothing(tmp_path, corpus, capsys):
    run_dir = tmp_path / "run"
    arguments = ["train", "--text", str(corpus), *TRAIN, "--run-dir", str(run_dir)]
    assert main([*arguments, "--max-windows", "2", "--log-every", "1"]) == 0
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    with FolderLock(run_dir):  # another writer
        resume = ["train", "--resume", str(run_dir), "--max-windows", "12", "--quiet"]
        second_writer_is_refused(resume, os.getpid(), capsys)
    after = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert after == before
