"""Language-model runs on a corpus already split: validation and test files read with
the training file's vocabulary, the test part scored at the end and by eval."""

from __future__ import annotations

import json
import math

import pytest

from tbptt.cli import commands
from tbptt.cli.main import main

TINY = ["--hidden-size", "12", "--num-layers", "1", "--k1", "8", "--batch-size", "2"]


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat on the mat.\n" * 30)
    (tmp_path / "valid.txt").write_text("the mat sat on the cat.\n" * 6)
    (tmp_path / "test.txt").write_text("on the mat the cat sat.\n" * 6)
    return tmp_path


def train(corpus, capsys, *options):
    run_dir = corpus / "run"
    arguments = ["train", "--text", str(corpus / "train.txt"), *TINY, "--epochs", "2"]
    assert main([*arguments, *options, "--jsonl", "--run-dir", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return run_dir, [json.loads(line) for line in lines]


def evaluate(capsys, *arguments):
    capsys.readouterr()
    assert main(["eval", *map(str, arguments), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_validation_and_test_files_are_the_runs_validation_and_test_data(corpus, capsys):
    files = [
        "--validation-file",
        str(corpus / "valid.txt"),
        "--test-file",
        str(corpus / "test.txt"),
    ]
    run_dir, records = train(corpus, capsys, *files)
    saved = json.loads((run_dir / "config.json").read_text())["data"]
    assert saved["validation_file"] == str(corpus / "valid.txt")
    (test,) = [record for record in records if record["kind"] == "test"]
    assert test["perplexity"] == pytest.approx(math.exp(test["loss"]))
    best = min(record["loss"] for record in records if record["kind"] == "eval")
    # eval scores best.pt: on the validation file, the best evaluation; on test, the same
    assert evaluate(capsys, run_dir)["loss"] == pytest.approx(best, rel=1e-6)
    assert evaluate(capsys, run_dir, "--split", "test")["loss"] == pytest.approx(test["loss"])
    as_a_file = evaluate(capsys, run_dir, corpus / "test.txt")
    assert as_a_file["loss"] == pytest.approx(test["loss"], rel=1e-6)  # the same text


def test_a_test_fraction_is_cut_from_the_end_after_the_validation_part(corpus, capsys):
    lines = [f"line {i % 7} of the text.\n" for i in range(200)]
    (corpus / "train.txt").write_text("".join(lines))
    run_dir, records = train(
        corpus, capsys, "--validation-fraction", "0.2", "--test-fraction", "0.1"
    )
    (test,) = [record for record in records if record["kind"] == "test"]
    last_tenth = corpus / "tail.txt"
    text = (corpus / "train.txt").read_text()
    last_tenth.write_text(text[len(text) - round(len(text) * 0.1) :])
    as_a_file = evaluate(capsys, run_dir, last_tenth)
    assert as_a_file["loss"] == pytest.approx(test["loss"], rel=1e-6)


def test_a_run_without_test_data_says_so_in_one_line(corpus, capsys):
    run_dir, _ = train(corpus, capsys)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--split", "test"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no test data" in error and "--test-file" in error


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--task", "copy", "--test-fraction", "0.1"], "a task generates its validation data"),
        (["--text", "EMPTY", "--test-file", "EMPTY"], "empty"),
    ],
)
def test_impossible_held_out_data_is_refused_in_one_line(corpus, capsys, options, message):
    (corpus / "empty.txt").write_text("")
    options = [str(corpus / "empty.txt") if o == "EMPTY" else o for o in options]
    if options[0] == "--text":
        options[1] = str(corpus / "train.txt")
    code = main(["train", *options, *TINY, "--run-dir", str(corpus / "run")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and message in error, error
    assert not (corpus / "run").exists()


@pytest.mark.parametrize(
    "options",
    [["--schedule", "plateau"], ["--optimizer", "ntasgd", "--lr", "1"], ["--advise-every", "4"]],
    ids=["plateau", "ntasgd", "advise-every"],
)
def test_eval_scores_a_run_whose_training_needed_validation(corpus, capsys, options):
    run_dir, records = train(corpus, capsys, *options)
    best = min(record["loss"] for record in records if record["kind"] == "eval")
    assert evaluate(capsys, run_dir)["loss"] == pytest.approx(best, rel=1e-6)


def test_eval_builds_no_trainer(corpus, capsys, monkeypatch):
    run_dir, records = train(corpus, capsys, "--schedule", "plateau")

    def no_trainer(*args, **kwargs):
        raise AssertionError("tbptt eval built a Trainer")

    monkeypatch.setattr(commands, "Trainer", no_trainer)
    best = min(record["loss"] for record in records if record["kind"] == "eval")
    assert evaluate(capsys, run_dir)["loss"] == pytest.approx(best, rel=1e-6)
