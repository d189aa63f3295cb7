"""``tbptt advise`` on a run: a table, a recommendation, plots and JSON; one-line errors."""

from __future__ import annotations

import json

import pytest

from tbptt.cli.main import main


def exit_code(argv):
    """``main``'s return value, or the code of the SystemExit its parser raises."""
    try:
        return main(argv)
    except SystemExit as stopped:
        return stopped.code


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "recall"
    code = main(
        [
            "train", "--task", "recall", "--length", "4", "--num-sequences", "8",
            "--batch-size", "4", "--hidden-size", "8", "--k1", "8", "--max-windows", "2",
            "--quiet", "--run-dir", str(run),
        ]
    )  # fmt: skip
    assert code == 0
    return run


def test_advise_prints_the_table_and_writes_plots_and_json(run_dir, tmp_path, capsys):
    out = tmp_path / "advice"
    code = main(
        ["advise", str(run_dir), "--steps", "24", "--streams", "2", "--k", "4", "8",
         "--pairs", "2:8", "--ends", "3", "--max-lag", "12", "--recompute", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "TBPTT(4, 4)" in printed and "TBPTT(2, 8)" in printed and "full BPTT" in printed
    assert "recommended" in printed or "no candidate" in printed
    summary = json.loads((out / "advice.json").read_text())
    assert [(row["k1"], row["k2"]) for row in summary["rows"]] == [(4, 4), (8, 8), (2, 8)]
    assert summary["steps"] == 24 and summary["streams"] == 2
    for name in ("flow.png", "bias.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_old_option_checkpointed_still_recomputes_with_one_deprecation_line(
    run_dir, tmp_path, capsys
):
    common = ["advise", str(run_dir), "--steps", "16", "--streams", "1", "--json"]
    assert main([*common, "--recompute", "--out", str(tmp_path / "new")]) == 0
    new = capsys.readouterr()
    assert main([*common, "--checkpointed", "--out", str(tmp_path / "old")]) == 0
    old = capsys.readouterr()
    assert old.err.splitlines() == [
        "tbptt advise: --checkpointed is deprecated: it is now --recompute"
    ]
    assert "deprecated" not in new.err
    untimed = [
        [{k: v for k, v in row.items() if k != "seconds"} for row in json.loads(run.out)["rows"]]
        for run in (old, new)
    ]
    assert untimed[0] == untimed[1]


def test_advise_defaults_to_the_runs_advice_folder_and_json_output(run_dir, capsys):
    assert main(["advise", str(run_dir), "--steps", "16", "--streams", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tolerance"] == 0.95
    assert (run_dir / "advice" / "advice.json").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--tolerance", "1.5"], "tolerance"),
        (["--pairs", "8:4"], "TBPTT(8, 4)"),
        (["--pairs", "x"], "K1:K2"),
        (["--steps", "0"], "--steps"),
        (["--max-lag", "0"], "--max-lag"),
        (["--k", "64"], "TBPTT(64, 64)"),
    ],
)
def test_bad_options_exit_with_code_2_and_one_line(run_dir, capsys, options, message):
    assert exit_code(["advise", str(run_dir), "--steps", "16", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_missing_checkpoint_is_one_line_and_code_2(tmp_path, capsys):
    assert main(["advise", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
