"""What the command says: a progress bar that moves from the first window (only on a
terminal), where a resumed run starts and that a stopped run stopped, the tokens a
vocabulary lacks, fp16 refused on a CPU, plain numbers and plurals."""

from __future__ import annotations

import io
import json
import os
import signal

import pytest

from tbptt.cli import output
from tbptt.cli.main import main
from tbptt.cli.output import Output, format_value, plural, progress_bar

TINY = ["--hidden-size", "8", "--num-layers", "1", "--k1", "8", "--batch-size", "2"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. " * 20)
    return path


@pytest.fixture
def run_dir(tmp_path, text_file):
    run = tmp_path / "run"
    train = ["train", "--text", str(text_file), *TINY, "--max-windows", "3", "--quiet"]
    assert main([*train, "--run-dir", str(run)]) == 0
    return run


def test_the_bar_advances_with_the_first_window_and_shows_its_loss(monkeypatch):
    monkeypatch.setattr(output.sys, "stderr", Terminal())
    shown = Output("text")
    shown.start(total=100, done=0)
    shown.window(1, 2.5)
    assert shown.bar is not None and shown.bar.n == 1
    assert shown.bar.postfix == "loss=2.5"


def test_no_bar_is_drawn_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(output.sys, "stderr", io.StringIO())
    assert progress_bar(10, "window").disable
    shown = Output("text")
    shown.start(total=10, done=0)
    shown.window(1, 2.5)
    assert output.sys.stderr.getvalue() == ""


def test_a_resumed_run_says_where_it_resumes(run_dir, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--max-windows", "4"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("resume") and "window 3" in first and "latest.pt" in first


def test_a_stopped_run_ends_with_a_stopped_line(tmp_path, text_file, monkeypatch, capsys):
    def window_then_stop(self, done, loss):
        if done == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C does

    monkeypatch.setattr(Output, "window", window_then_stop)
    run = ["train", "--text", str(text_file), *TINY, "--run-dir", str(tmp_path / "run")]
    assert main(run) == 130
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].startswith("stopped")
    assert "stopped at update 2 of" in captured.err and "--resume" in captured.err


def test_eval_counts_the_tokens_the_vocabulary_lacks(run_dir, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("the cat sat on the mat. ZQ the cat. " * 3)  # Z and Q, 3 times each
    capsys.readouterr()
    assert main(["eval", str(run_dir), str(other), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unknown_tokens"] == 6
    assert "6 tokens are not in the run's vocabulary" in captured.err


def test_eval_with_strict_vocabulary_refuses_them_in_one_line(run_dir, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("the cat Z sat on the mat. " * 3)
    capsys.readouterr()
    assert main(["eval", str(run_dir), str(other), "--strict-vocabulary"]) == 2
    error = capsys.readouterr().err
    assert "3 of" in error and "not in the run's vocabulary" in error and error.count("\n") == 1


def test_generate_says_the_prompt_holds_an_unknown_token(run_dir, capsys):
    capsys.readouterr()
    assert main(["generate", str(run_dir), "--prompt", "the Zat", "--length", "2"]) == 0
    assert "1 token is not in the run's vocabulary in the prompt" in capsys.readouterr().err
    assert main(["generate", str(run_dir), "--prompt", "Z", "--strict-vocabulary"]) == 2


def test_fp16_on_a_cpu_is_refused_before_anything_is_written(tmp_path, text_file, capsys):
    run = ["train", "--text", str(text_file), *TINY, "--run-dir", str(tmp_path / "run")]
    assert main([*run, "--precision", "fp16"]) == 2
    error = capsys.readouterr().err
    assert "fp16 needs a GPU" in error and "bf16" in error and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_run_too_short_to_log_says_so(tmp_path, text_file, capsys):
    run = ["train", "--text", str(text_file), *TINY, "--max-windows", "2"]
    assert main([*run, "--run-dir", str(tmp_path / "run")]) == 0
    assert "this run makes 2 updates, fewer than --log-every 50" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "text"),
    [(6504.2, "6504"), (153512.7, "153513"), (0.5, "0.5"), (1.23456, "1.235"), (2e-5, "2.000e-05")],
)
def test_numbers_keep_one_form_whatever_their_size(value, text):
    assert format_value(value) == text


def test_plurals_agree_with_their_count():
    assert (plural(1, "update"), plural(2, "update"), plural(0, "seed")) == (
        "1 update",
        "2 updates",
        "0 seeds",
    )


def test_help_shows_no_empty_default_and_no_internal_names(capsys):
    for command in ("generate", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    text = capsys.readouterr().out
    assert "(default: )" not in text and "RANDOM_BATCH_WINDOWS" not in text
