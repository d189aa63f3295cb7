"""The tbptt command: it teaches with --help, trains on text, CSV and tasks, evaluates,
samples, resumes exactly, reads config files, and runs the demo."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

import tbptt
from tbptt.cli.main import main
from tbptt.cli.output import Output
from tbptt.data import Vocabulary, write_tokens
from tbptt.training import checkpoints

TINY_MODEL = ["--hidden-size", "12", "--num-layers", "1", "--quiet"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tbptt {tbptt.__version__}"


def test_help_explains_the_truncation(capsys):
    assert main([]) == 0
    assert "TBPTT(k1, k2)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "teaches"),
    [
        ("train", ["--k1", "--k2", "--text", "--csv", "--tokens", "--task", "--resume", "TOML"]),
        ("eval", ["checkpoint", "--batch-size", "validation"]),
        ("generate", ["--prompt", "--temperature", "--top-k", "--length"]),
        ("demo", ["--delay", "--epochs", "--out", "full BPTT"]),
    ],
)
def test_every_subcommand_has_help_that_names_its_options(capsys, command, teaches):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in teaches:
        assert word in text


def test_unknown_option_exits_with_code_2_and_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "tbptt", "--frobnicate"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unrecognized arguments: --frobnicate" in done.stderr
    assert "Traceback" not in done.stderr


def eval_records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == "eval"]


def run_eval(capsys, *arguments):
    capsys.readouterr()
    assert main(["eval", *map(str, arguments), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. " * 40)
    return path


def test_the_old_option_checkpoint_activations_still_recomputes(tmp_path, text_file):
    run_dir = tmp_path / "run"
    arguments = ["train", "--text", text_file, "--k1", "8", "--max-windows", "2"]
    old = ["--checkpoint-activations", "--checkpoint-segment", "3", "--run-dir", run_dir]
    assert main([*map(str, arguments), *TINY_MODEL, *map(str, old)]) == 0
    saved = json.loads((run_dir / "config.json").read_text())["train"]
    assert (saved["recompute_activations"], saved["recompute_segment"]) == (True, 3)


def test_train_then_eval_on_a_text_file(tmp_path, text_file, capsys):
    run_dir = tmp_path / "run"
    arguments = ["train", "--text", text_file, "--k1", "8", "--k2", "12", "--lr", "0.01"]
    code = main([*map(str, arguments), *TINY_MODEL, "--epochs", "3", "--run-dir", str(run_dir)])
    assert code == 0
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "learning_curves.png"):
        assert (run_dir / name).is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert any((run_dir / "tensorboard").iterdir())
    evaluations = eval_records(run_dir)
    assert len(evaluations) == 3  # one per epoch
    uniform = math.log(12)  # 11 characters and <unk>
    assert evaluations[-1]["loss"] < evaluations[0]["loss"] < uniform
    best = min(record["loss"] for record in evaluations)
    metrics = run_eval(capsys, run_dir)  # the best checkpoint on the validation part
    assert metrics["loss"] == pytest.approx(best, rel=1e-5)
    assert metrics["bits_per_token"] == pytest.approx(best / math.log(2), rel=1e-5)
    other = tmp_path / "other.txt"
    other.write_text("the mat sat on the cat. " * 5)
    assert math.isfinite(run_eval(capsys, run_dir / "checkpoints" / "best.pt", other)["loss"])


def test_train_then_eval_on_a_csv_file(tmp_path, capsys):
    path = tmp_path / "weather.csv"
    rows = [f"{math.sin(t / 5):.4f},{math.cos(t / 3):.4f}" for t in range(300)]
    path.write_text("temperature,pressure\n" + "\n".join(rows) + "\n")
    run_dir = tmp_path / "run"
    arguments = ["train", "--csv", path, "--targets", "temperature", "--k1", "10", "--lr", "0.01"]
    arguments += ["--batch-size", "4"]
    code = main([*map(str, arguments), *TINY_MODEL, "--epochs", "4", "--run-dir", str(run_dir)])
    assert code == 0
    evaluations = eval_records(run_dir)
    assert {"mse", "mae"} <= evaluations[-1].keys()
    assert evaluations[-1]["mse"] < evaluations[0]["mse"]
    model = run_eval(capsys, run_dir)["methods"]["model"]  # the best weights, scaled units
    assert model["mse_scaled"] == pytest.approx(min(r["mse"] for r in evaluations), rel=1e-5)
    assert model["mae"] >= 0


def test_train_on_a_token_file_with_its_vocabulary_then_generate(tmp_path, text_file, capsys):
    vocabulary = Vocabulary.build(text_file.read_text(), level="char")
    vocabulary.save(tmp_path / "vocab.json")
    write_tokens(text_file, tmp_path / "ids.bin", vocabulary)
    run_dir = tmp_path / "run"
    arguments = ["train", "--tokens", str(tmp_path / "ids.bin"), "--k1", "8", *TINY_MODEL]
    arguments += ["--vocabulary", str(tmp_path / "vocab.json"), "--run-dir", str(run_dir)]
    assert main(arguments) == 0
    assert math.isfinite(run_eval(capsys, run_dir)["bits_per_token"])
    assert main(["generate", str(run_dir), "--prompt", "the ", "--length", "12"]) == 0
    sample = capsys.readouterr().out.rstrip("\n")
    assert sample.startswith("the ") and set(sample) <= set(text_file.read_text())


def test_a_task_run_reports_the_task_metric(tmp_path, capsys):
    run_dir = tmp_path / "run"
    arguments = ["train", "--task", "recall", "--length", "2", "--num-sequences", "16"]
    code = main(
        [*arguments, "--batch-size", "8", "--k1", "5", *TINY_MODEL, "--run-dir", str(run_dir)]
    )
    assert code == 0
    metrics = run_eval(capsys, run_dir)
    assert 0 <= metrics["delayed_recall_accuracy"] <= 1 and 0 <= metrics["accuracy"] <= 1


def test_generate_reads_the_prompt_and_samples_from_the_vocabulary(tmp_path, text_file, capsys):
    run_dir = tmp_path / "run"
    arguments = ["train", "--text", str(text_file), "--k1", "8", *TINY_MODEL]
    assert main([*arguments, "--run-dir", str(run_dir)]) == 0
    samples = []
    for seed in ("1", "1", "2"):
        capsys.readouterr()
        options = ["--prompt", "the ", "--length", "30", "--top-k", "3", "--seed", seed]
        assert main(["generate", str(run_dir), *options]) == 0
        samples.append(capsys.readouterr().out.rstrip("\n"))
    assert samples[0] == samples[1] != samples[2]  # the seed decides the sample
    for sample in samples:
        assert sample.startswith("the ") and len(sample) == 4 + 30
        assert set(sample) <= set(text_file.read_text())


def trained_parameters(run_dir):
    return checkpoints.load(run_dir / "checkpoints" / "latest.pt")["model"]


AWD_OPTIONS = ["--embedding-dropout", "0.1", "--input-dropout", "0.3", "--hidden-dropout", "0.2"]
AWD_OPTIONS += ["--output-dropout", "0.2", "--weight-drop", "0.4", "--num-layers", "2"]


AR_TAR = ["--activation-penalty", "2", "--temporal-penalty", "1"]


@pytest.mark.parametrize(
    "options", [[], AWD_OPTIONS, [*AWD_OPTIONS, *AR_TAR]], ids=["dropout", "awd-lstm", "ar-tar"]
)
def test_resume_from_the_command_line_ends_where_an_unstopped_run_ends(
    tmp_path, text_file, options
):
    common = ["train", "--text", str(text_file), "--k1", "6", "--k2", "9", "--dropout", "0.1"]
    common += [*TINY_MODEL, "--batch-size", "3", "--epochs", "2", "--checkpoint-every", "1"]
    common += options
    assert main([*common, "--run-dir", str(tmp_path / "whole")]) == 0
    assert main([*common, "--run-dir", str(tmp_path / "parts"), "--max-windows", "7"]) == 0
    resume = ["train", "--resume", str(tmp_path / "parts"), "--max-windows", "1000", "--quiet"]
    assert main(resume) == 0  # the stop limit may change on resume; nothing else
    whole, parts = trained_parameters(tmp_path / "whole"), trained_parameters(tmp_path / "parts")
    assert whole.keys() == parts.keys()
    for name in whole:
        assert torch.equal(whole[name], parts[name]), name


def test_initialisation_options_reach_the_model_and_its_saved_config(tmp_path, text_file):
    run_dir = tmp_path / "run"
    arguments = ["train", "--text", str(text_file), "--k1", "6", *TINY_MODEL, "--lr", "1e-9"]
    arguments += ["--init", "uniform:0.05", "--forget-bias", "2", "--max-windows", "1"]
    assert main([*arguments, "--optimizer", "sgd", "--run-dir", str(run_dir)]) == 0
    saved = json.loads((run_dir / "config.json").read_text())["model"]
    assert (saved["init"], saved["forget_bias"]) == ("uniform:0.05", 2.0)
    weights = trained_parameters(run_dir)  # one SGD step at lr 1e-9 moves nothing visibly
    assert float(weights["head.weight"].abs().max()) <= 0.05 + 1e-6
    forget = weights["rnn.bias_ih_l0"][12:24] + weights["rnn.bias_hh_l0"][12:24]
    torch.testing.assert_close(forget, torch.full((12,), 2.0))


def test_ar_and_tar_from_a_config_file_train_the_model_and_stay_out_of_the_reported_loss(
    tmp_path, text_file
):
    config = tmp_path / "awd.toml"
    config.write_text("[model]\nactivation_penalty = 2.0\ntemporal_penalty = 1.0\n")
    common = ["train", "--text", str(text_file), "--k1", "6", *TINY_MODEL, "--max-windows", "3"]
    common += [*AWD_OPTIONS, "--log-every", "1"]
    runs = {
        "penalised": ["--config", str(config)],
        "zero": ["--config", str(config), "--activation-penalty", "0", "--temporal-penalty", "0"],
        "plain": [],
    }
    for name, options in runs.items():
        assert main([*common, *options, "--run-dir", str(tmp_path / name)]) == 0
    saved = json.loads((tmp_path / "penalised" / "config.json").read_text())["model"]
    assert (saved["activation_penalty"], saved["temporal_penalty"]) == (2.0, 1.0)

    def first_loss(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return next(r for r in map(json.loads, lines) if r["kind"] == "train")["loss"]

    assert first_loss("penalised") == first_loss("plain")  # the data loss, as awd-lstm-lm logs
    weights = {name: trained_parameters(tmp_path / name) for name in runs}
    plain = weights["plain"]
    assert all(torch.equal(weights["zero"][n], plain[n]) for n in plain)  # 0: no penalty
    assert not all(torch.equal(weights["penalised"][n], plain[n]) for n in plain)


def test_a_config_file_sets_options_and_the_command_line_overrides_it(tmp_path, text_file):
    config = tmp_path / "run.toml"
    config.write_text(
        f'run_dir = "{tmp_path / "run"}"\n[model]\nhidden_size = 10\nnum_layers = 1\n'
        f'[data]\ntext = "{text_file}"\nbatch_size = 2\n[train]\nk1 = 5\nk2 = 7\n'
    )
    assert main(["train", "--config", str(config), "--k2", "9", "--quiet"]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 10 and saved["data"]["batch_size"] == 2
    assert (saved["train"]["k1"], saved["train"]["k2"]) == (5, 9)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[train]\nk_1 = 5\n", "[train] has no key 'k_1'; did you mean 'k1'?"),
        ("[model]\nhidden_size = 'big'\n", "hidden_size"),
        ("[trian]\nk1 = 5\n", "did you mean 'train'?"),
        ("[train]\nk1 = 9\nk2 = 3\n", "k1=9 > k2=3"),
    ],
)
def test_config_errors_name_the_key_and_the_fix(tmp_path, text_file, capsys, document, message):
    config = tmp_path / "bad.toml"
    config.write_text(f'[data]\ntext = "{text_file}"\n' + document)
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not run_dir.exists()


def test_the_demo_prints_its_table_and_writes_results_and_plot(tmp_path, capsys):
    out = tmp_path / "demo"
    arguments = ["--delay", "2", "--epochs", "1", "--sequences", "32", "--out", str(out)]
    assert main(["demo", *arguments]) == 0
    text = capsys.readouterr().out
    for name in ("TBPTT(5, 5)", "TBPTT(10, 20)", "full BPTT", "accuracy", "memory"):
        assert name in text
    report = json.loads((out / "results.json").read_text())
    results = {result["name"]: result for result in report["results"]}
    assert len(results) == 6 and results["full BPTT"]["k2"] == 100  # 50 * delay steps
    memory = [result["activation_mb"] for result in report["results"]]
    assert memory == sorted(memory)  # activation memory grows with k2
    assert (out / "truncation.png").stat().st_size > 10_000


def test_text_output_shows_records_without_a_loss(capsys):
    output = Output("text")
    output.start(total=10, done=0)
    output.record({"kind": "train", "window": 2, "loss": 1.5})
    output.record({"kind": "advice", "window": 3, "k2": 8})
    output.record({"kind": "rollback", "window": 1, "from_window": 3, "lr": 0.5})
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "train  window 2  loss 1.5",
        "advice  window 3  k2 8",
        "rollback  window 1  from_window 3  lr 0.5",
    ]
