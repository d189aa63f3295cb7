"""Memory estimates: a run whose parameters or data exceed the memory available is
refused with the figure, before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tbptt.cli import budget
from tbptt.cli.main import main
from tbptt.data import tasks

SMALL = ["--hidden-size", "8", "--num-layers", "1", "--k1", "8", "--batch-size", "4"]


def test_parameter_bytes_are_the_models_tensors_times_the_copies_and_allocate_nothing():
    assert budget.model_bytes(lambda: torch.nn.Linear(3, 2), copies=4) == 4 * (6 + 2) * 4
    huge = budget.model_bytes(lambda: torch.nn.Embedding(10**12, 256), copies=1)
    assert huge == 10**12 * 256 * 4  # built on the meta device: no memory taken


@pytest.mark.parametrize("length", [50, 300])
def test_a_tasks_bytes_are_estimated_exactly_from_two_tiny_data_sets(length):
    def make(steps: int) -> tasks.TaskData:
        return tasks.copy_memory(budget.PROBE_SEQUENCES, steps, seed=0)

    data = tasks.copy_memory(64, length, seed=0)
    actual = sum(t.numel() * t.element_size() for t in (data.inputs, data.targets, data.mask))
    assert budget.task_bytes(make, length, 64 / budget.PROBE_SEQUENCES) == actual


def test_the_memory_available_is_known_on_this_machine():
    available = budget.available_memory()
    assert available is not None and available > 0


def test_sizes_read_for_people():
    assert budget.size_text(512) == "512 bytes"
    assert budget.size_text(1.6e13) == "16.0 TB"


@pytest.fixture
def corpus(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("abcde \n" * 500)
    return tmp_path


def test_a_run_larger_than_the_memory_available_is_refused_with_the_figure(
    corpus, monkeypatch, capsys
):
    monkeypatch.setattr(budget, "available_memory", lambda: 5000)
    argv = ["train", "--text", "corpus.txt", *SMALL, "--max-windows", "2", "--run-dir", "run"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "this needs about 84.0 KB of memory (data 84.0 KB" in err  # 24 bytes a byte of text
    assert "more than the 5.0 KB of memory available" in err
    assert not (corpus / "run").exists()


def test_eval_refuses_a_model_larger_than_the_memory_available(corpus, monkeypatch, capsys):
    argv = ["train", "--text", "corpus.txt", *SMALL, "--max-windows", "2", "--quiet"]
    assert main([*argv, "--run-dir", "run"]) == 0
    parameters = budget.model_bytes(lambda: torch.nn.LSTM(8, 8), 1)
    monkeypatch.setattr(budget, "available_memory", lambda: parameters)
    capsys.readouterr()
    assert main(["eval", "run"]) == 2
    err = capsys.readouterr().err
    assert "of memory (parameters " in err and "more than the" in err  # only what eval reads


def test_only_what_a_command_reads_is_counted(corpus, monkeypatch, capsys):
    argv = ["train", "--text", "corpus.txt", *SMALL, "--max-windows", "2", "--quiet"]
    assert main([*argv, "--run-dir", "run"]) == 0
    monkeypatch.setattr(budget, "TEXT_BYTES", 10**12)  # the run's text would never fit
    assert main(["generate", "run", "--length", "5"]) == 0  # reads no data
    assert main(["eval", "run", "corpus.txt"]) == 0  # reads the file named, not the run's
    capsys.readouterr()
    assert main(["eval", "run"]) == 2  # reads the run's text
    assert "(data " in capsys.readouterr().err
