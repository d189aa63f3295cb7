"""The reproduction examples run end to end on tiny settings and write what they promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "examples" / name / "run.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )


def test_long_time_lags_reports_every_arm_beside_the_papers_rows(tmp_path):
    done = run_example(
        "long_time_lags",
        *("--seeds", "1", "--max-sequences", "64", "--jobs", "1", "--out", str(tmp_path)),
        *("--reber-arms", "lstm:full", "elman:1", "--order-arms", "lstm-default:5"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    arms = {(r["task"], r["cell"], r["k_label"]) for r in report["runs"]}
    assert arms == {
        ("reber", "lstm", "full"),
        ("reber", "elman", "1"),
        ("order", "lstm-default", "5"),
    }
    assert all(r["sequences"] == 64 and not r["solved"] for r in report["runs"])  # too few
    table = (tmp_path / "table.md").read_text()
    assert "H&S 1997: Elman net, 15 units" in table and "tbptt: elman, TBPTT(1, 1)" in table
    assert (tmp_path / "success.png").read_bytes()[:4] == b"\x89PNG"


def test_long_time_lags_refuses_an_unknown_network(tmp_path):
    done = run_example("long_time_lags", "--reber-arms", "gru:full", "--out", str(tmp_path))
    assert done.returncode != 0 and "NETWORK one of lstm, lstm-default, elman" in done.stderr
    assert not (tmp_path / "results.json").exists()


def test_randomised_truncation_pairs_the_arms_by_seed(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question.\n" * 300)
    done = run_example(
        "randomised_truncation",
        *("--text", str(text), "--hidden-size", "8", "--epochs", "1", "--k", "10"),
        *("--std", "2", "--eval-every", "5", "--seeds", "1", "--jobs", "2"),
        *("--out", str(tmp_path / "out")),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    by_arm = {r["arm"]: r for r in report["runs"]}
    assert set(by_arm) == {"fixed", "random"}
    assert by_arm["random"]["updates"] != by_arm["fixed"]["updates"]  # drawn lengths
    difference = by_arm["random"]["best_loss"] - by_arm["fixed"]["best_loss"]
    assert report["random_minus_fixed"] == [difference]
    assert "--k1-std" in report["commands"]["random"]
    assert "--k1-std" not in report["commands"]["fixed"]


def test_randomised_truncation_stops_with_the_failed_command(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("too short for 32 streams of 8 windows\n")
    done = run_example("randomised_truncation", "--text", str(text), "--out", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert "a training run failed" in done.stdout and "shorter than one window" in done.stderr


def test_randomised_truncation_needs_the_text(tmp_path):
    done = run_example("randomised_truncation", "--text", str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "no such file" in done.stderr


def test_recurrent_ppo_quick_runs_both_arms_in_step(tmp_path):
    pytest.importorskip("gymnasium")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "recurrent_ppo" / "run.py")]
        + ["--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    tbptt_run, loop_run = report["runs"]
    assert (tbptt_run["arm"], loop_run["arm"]) == ("tbptt", "loop")
    assert len(tbptt_run["curve"]) == len(loop_run["curve"]) == 3
    # the same seed, weights, draws and minibatches: the same episodes, up to rounding
    assert tbptt_run["episodes"] == loop_run["episodes"]
    assert report["summary"]["update_speedup"]["per_seed"]
    assert (tmp_path / "returns.png").read_bytes()[:4] == b"\x89PNG"


def merge_ppo(*args: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "examples" / "recurrent_ppo" / "run.py"
    return subprocess.run(
        [sys.executable, str(script), "--merge", *args], capture_output=True, text=True, timeout=120
    )


def test_recurrent_ppo_merge_joins_sweeps_and_refuses_a_seed_twice(tmp_path):
    runs = [
        {"arm": arm, "seed": seed, "update_cpu_ms": ms, "final_return": 20.0, "cpu_s": 1.0}
        for seed, arm, ms in [
            (0, "tbptt", 1.0),
            (0, "loop", 4.0),
            (1, "tbptt", 2.0),
            (1, "loop", 4.0),
        ]
    ]
    for run in runs:
        run["curve"] = [{"env_steps": 64, "cpu_s": 1.0, "wall_s": 1.0, "mean_return": 20.0}]
    for seed in (0, 1):
        sweep = {"settings": {"envs": 4}, "seeds": [seed], "machine": {}}
        sweep["runs"] = [r for r in runs if r["seed"] == seed]
        (tmp_path / f"{seed}.json").write_text(json.dumps(sweep))
    done = merge_ppo(
        str(tmp_path / "0.json"), str(tmp_path / "1.json"), "--out", str(tmp_path / "both")
    )
    assert done.returncode == 0, done.stderr
    joined = json.loads((tmp_path / "both" / "results.json").read_text())
    assert joined["seeds"] == [0, 1] and joined["summary"]["update_speedup"]["per_seed"] == [
        4.0,
        2.0,
    ]
    twice = merge_ppo(
        str(tmp_path / "0.json"), str(tmp_path / "0.json"), "--out", str(tmp_path / "x")
    )
    assert twice.returncode != 0 and "a seed appears twice" in twice.stderr
    assert not (tmp_path / "x").exists()
