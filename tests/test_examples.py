"""Every example runs end to end in its ``--quick`` mode (each stage, tiny settings)
and writes what it promises, and shows its defaults in ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


SCRIPTS = {
    "quickstart": ROOT / "examples" / "quickstart.py",
    "evolution": ROOT / "examples" / "evolution" / "evolution_vs_bptt.py",
    **{
        name: ROOT / "examples" / name / "run.py"
        for name in ("long_time_lags", "randomised_truncation", "truncation_vs_dependency")
    },
}


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS[name]), *args], capture_output=True, text=True, timeout=300
    )


HELP = """
import contextlib, io, runpy, sys
for script in sys.argv[1:]:
    sys.argv = [script, "--help"]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        runpy.run_path(script, run_name="__main__")
    assert "--quick" in out.getvalue() and "(default:" in out.getvalue(), script
"""


def test_every_example_shows_its_defaults_and_a_quick_mode():
    scripts = [str(script) for script in SCRIPTS.values()]  # one process: torch loads once
    done = subprocess.run([sys.executable, "-c", HELP, *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_quickstart_compares_four_truncations():
    done = run_example("quickstart", "--quick")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("TBPTT(k1=") == 4


def test_evolution_compares_bptt_with_both_strategies(tmp_path):
    done = run_example("evolution", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    methods = {trace["method"] for trace in report["traces"]}  # CMA-ES if cma is installed
    assert report["settings"]["budget"] == 1.0 and {"BPTT (full, Adam)", "OpenAI-ES"} <= methods
    assert (tmp_path / "evolution_vs_bptt.png").read_bytes()[:4] == b"\x89PNG"


def test_truncation_vs_dependency_measures_every_cell_of_both_tasks(tmp_path):
    done = run_example("truncation_vs_dependency", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    cells = {(r["task"], r["length"], r["k"]) for r in report["summary"]}
    assert cells == {(task, 10, k) for task in ("copy", "adding") for k in ("5", "full")}
    for task in ("copy", "adding"):
        assert (tmp_path / f"{task}.png").read_bytes()[:4] == b"\x89PNG"


def test_long_time_lags_reports_every_arm_beside_the_papers_rows(tmp_path):
    done = run_example("long_time_lags", "--quick", "--out", str(tmp_path))
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
    done = run_example("randomised_truncation", "--quick", "--out", str(tmp_path / "out"))
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
