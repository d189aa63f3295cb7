"""``--threads N``: every subcommand takes it (and ``threads`` in a config file), and
it sets torch's threads before the command works; without it, one thread."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tbptt.cli import commands
from tbptt.cli.main import main
from tbptt.cli.threads import default_threads, use_threads
from tbptt.errors import TBPTTError

TINY = ["--hidden-size", "8", "--num-layers", "1", "--k1", "8", "--batch-size", "2", "--quiet"]


@pytest.fixture(autouse=True)
def one_thread_after():
    yield
    torch.set_num_threads(1)  # as tests/conftest.py left it


@pytest.fixture
def threads_used(monkeypatch):
    """The thread counts the commands asked for, in order (none applied: two threads
    on a busy test machine would only slow the tests down)."""
    used: list[int | None] = []
    monkeypatch.setattr(commands, "use_threads", used.append)
    return used


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. " * 20)
    return path


@pytest.mark.parametrize("command", ["train", "eval", "generate", "demo", "advise"])
def test_every_subcommand_takes_threads(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--threads" in capsys.readouterr().out


def test_threads_sets_torchs_intra_op_threads():
    assert use_threads(2) == 2 and torch.get_num_threads() == 2


def test_without_threads_one_thread_which_never_oversubscribes():
    assert default_threads() == 1 <= len(os.sched_getaffinity(0))
    assert use_threads(None) == 1 and torch.get_num_threads() == 1


def test_threads_in_a_config_file_is_used_and_saved(tmp_path, text_file, threads_used):
    config = tmp_path / "run.toml"
    config.write_text(
        f'threads = 2\nrun_dir = "{tmp_path / "run"}"\n[data]\ntext = "{text_file}"\n'
    )
    assert main(["train", "--config", str(config), *TINY, "--max-windows", "1"]) == 0
    assert threads_used == [2]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 2


def test_the_option_overrides_the_config_file(tmp_path, text_file, threads_used):
    config = tmp_path / "run.toml"
    config.write_text(f'threads = 2\n[data]\ntext = "{text_file}"\n')
    run = ["train", "--config", str(config), *TINY, "--max-windows", "1", "--threads", "3"]
    assert main([*run, "--run-dir", str(tmp_path / "run")]) == 0
    assert threads_used == [3]


def test_eval_generate_and_resume_take_threads(tmp_path, text_file, threads_used):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--text",
                str(text_file),
                *TINY,
                "--max-windows",
                "1",
                "--run-dir",
                str(run_dir),
            ]
        )
        == 0
    )
    assert main(["eval", str(run_dir), "--threads", "2", "--json"]) == 0
    assert main(["generate", str(run_dir), "--length", "3", "--threads", "3"]) == 0
    resume = ["train", "--resume", str(run_dir), "--max-windows", "2", "--threads", "4"]
    assert main([*resume, "--quiet"]) == 0  # threads may change on resume
    assert threads_used == [None, 2, 3, 4]


def test_zero_threads_is_refused_in_one_line(tmp_path, text_file, capsys):
    run = ["train", "--text", str(text_file), "--run-dir", str(tmp_path / "run")]
    assert main([*run, "--threads", "0"]) == 2
    error = capsys.readouterr().err
    assert "threads must be >= 1, got 0" in error and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_more_threads_than_the_machine_has_cpus_is_refused_before_any_work():
    cpus = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    refused = f"threads 1,000,000,000 is more than the {cpus} CPUs? this process may use"
    with pytest.raises(TBPTTError, match=refused):
        use_threads(10**9)  # OpenMP would abort the process at its first parallel work
    assert torch.get_num_threads() == before


def test_the_cap_is_the_cpus_this_process_may_use_not_the_machines(monkeypatch):
    """Under ``taskset -c 0`` or a one-CPU container cpuset, two threads would fight for
    one CPU: refused, though the machine has more."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    with pytest.raises(TBPTTError, match="threads 2 is more than the 1 CPU this .* give at most 1"):
        use_threads(2)
    assert use_threads(1) == 1
