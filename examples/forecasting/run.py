"""Forecasting real series with ``tbptt train --csv``: the model against every baseline.

Writes each series as a CSV (Mauna Loa CO2 weekly, El Nino sea temperatures monthly
and yearly sunspots from statsmodels' bundled data sets, ``pip install statsmodels``;
and a Mackey-Glass series from tbptt.data.tasks), then for each series, horizon and
seed trains with ``tbptt train --csv FILE --horizon H --validation-fraction 0.15
--test-fraction 0.2`` plus the options of the arm, and scores the test split
(``tbptt eval RUN --split test``: the state warmed on all the data before it) beside
persistence, seasonal naive and the linear AR baseline. Writes ``results.json``
(every run, settings, machine) and ``table.md`` to --out.

    python examples/forecasting/run.py --out results/forecasting          # the table
    python examples/forecasting/run.py --quick                             # < 1 minute
    python examples/forecasting/run.py --arms default base_last --split validation
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from tbptt.cli import commands
from tbptt.cli.main import main
from tbptt.cli.runconfig import EvalConfig
from tbptt.data.tasks import mackey_glass
from tbptt.devices import machine

HORIZONS = {"co2": (1, 24, 52), "elnino": (1, 24, 48), "mackey_glass": (1, 24, 84)}
"""Per series: one step, 24 steps and one longer horizon (sunspots is too short for it)."""
HORIZONS["sunspots"] = (1, 24)
ARMS: dict[str, list[str]] = {
    "default": [],
    "base_last": ["--base", "last"],
    "base_none": ["--base", "none"],
    "input_levels": ["--no-input-changes"],
    "unscaled": ["--no-scale-targets"],
    "wide": ["--hidden-size", "128"],
    "long_k": ["--k1", "64", "--k2", "128"],
    "short_k": ["--k1", "16", "--k2", "16"],
    "patience_10": ["--patience", "10"],
    "last_weights": ["--no-restore-best"],
}
"""Variations on the defaults, to measure what helps."""


def write_series(folder: Path) -> dict[str, list[str]]:
    """The series as CSV files in ``folder``; the extra options each needs."""
    import statsmodels.api as sm  # examples only: not a dependency of tbptt

    folder.mkdir(parents=True, exist_ok=True)
    co2 = sm.datasets.co2.load_pandas().data["co2"].interpolate()
    lines = [f"{day:%Y-%m-%d},{value:.2f}" for day, value in co2.items()]
    (folder / "co2.csv").write_text("date,co2\n" + "\n".join(lines) + "\n")
    elnino = sm.datasets.elnino.load_pandas().data
    lines = [
        f"{int(row.YEAR)}-{month:02d}-01,{getattr(row, name):.2f}"
        for row in elnino.itertuples()
        for month, name in enumerate(elnino.columns[1:], start=1)
    ]
    (folder / "elnino.csv").write_text("date,sst\n" + "\n".join(lines) + "\n")
    sunspots = sm.datasets.sunspots.load_pandas().data
    lines = [f"{int(r.YEAR)},{r.SUNACTIVITY:.1f}" for r in sunspots.itertuples()]
    (folder / "sunspots.csv").write_text("year,sunspots\n" + "\n".join(lines) + "\n")
    values = mackey_glass(2000, seed=0).inputs[:, 0, 0].numpy()
    (folder / "mackey_glass.csv").write_text("x\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")
    return {"sunspots": ["--time-column", "year"]}


def train_and_score(
    csv: Path, extra: list[str], horizon: int, seed: int, arm: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One run: train, then score the chosen split beside the baselines."""
    run_dir = args.out / "runs" / f"{csv.stem}-h{horizon}-{arm}-s{seed}"
    argv = ["train", "--csv", str(csv), "--horizon", str(horizon), *extra, *ARMS[arm]]
    argv += ["--validation-fraction", "0.15", "--test-fraction", "0.2", "--seed", str(seed)]
    argv += [*args.train_options, "--quiet", "--overwrite", "--run-dir", str(run_dir)]
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"tbptt {' '.join(argv)} exited with {code}")
    report = commands.evaluate(str(run_dir), None, EvalConfig(split=args.split))
    return {
        "series": csv.stem,
        "horizon": horizon,
        "seed": seed,
        "arm": arm,
        "seconds": seconds,
        "argv": argv,
        "report": report,
    }


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per series, horizon and arm: the mean and spread over seeds of each method's MSE."""
    rows = []
    keys = sorted({(r["series"], r["horizon"], r["arm"]) for r in runs})
    for series, horizon, arm in keys:
        group = [r for r in runs if (r["series"], r["horizon"], r["arm"]) == (series, horizon, arm)]
        methods = group[0]["report"]["methods"]
        row: dict[str, Any] = {
            "series": series,
            "horizon": horizon,
            "arm": arm,
            "seeds": len(group),
        }
        for name in methods:
            values = [r["report"]["methods"][name]["mse_scaled"] for r in group]
            row[name] = (statistics.mean(values), statistics.pstdev(values))
        row["skill"] = statistics.mean(r["report"]["methods"]["model"]["skill"] for r in group)
        row["seconds"] = statistics.mean(r["seconds"] for r in group)
        rows.append(row)
    return rows


def cell(row: dict[str, Any], prefix: str) -> str:
    """``mean ± sd`` of the method whose name starts with ``prefix`` ('-' if none)."""
    name = next((key for key in row if key.startswith(prefix)), None)
    return "-" if name is None else f"{row[name][0]:.4f} ± {row[name][1]:.4f}"


def table(rows: list[dict[str, Any]], split: str) -> str:
    """A markdown table: scaled MSE (mean ± sd over seeds) of the model and baselines."""
    lines = [
        "| series | H | arm | model | persistence | seasonal naive | linear AR | skill | s/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['series']} | {row['horizon']} | {row['arm']} | {cell(row, 'model')} | "
            f"{cell(row, 'persistence')} | {cell(row, 'seasonal_naive')} | "
            f"{cell(row, 'linear_ar')} | "
            f"{row['skill']:.3f} | {row['seconds']:.0f} |"
        )
    return f"Scaled MSE on the {split} split (mean ± sd over seeds)\n\n" + "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/forecasting"))
    parser.add_argument("--series", nargs="+", default=list(HORIZONS), choices=list(HORIZONS))
    parser.add_argument("--horizons", nargs="+", type=int, help="default: each series' own")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["default"], choices=list(ARMS))
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--quick", action="store_true", help="one run: CO2, H 24, seed 0")
    parser.add_argument(
        "--train-options",
        nargs=argparse.REMAINDER,
        default=[],
        help="more tbptt train options for every run (last on the line)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.series, args.horizons, args.seeds = ["co2"], [24], [0]
    return args


def main_script(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    extras = write_series(args.out / "data")
    runs = []
    for series in args.series:
        for horizon in args.horizons or HORIZONS[series]:
            for arm in args.arms:
                for seed in args.seeds:
                    csv = args.out / "data" / f"{series}.csv"
                    run = train_and_score(csv, extras.get(series, []), horizon, seed, arm, args)
                    model = run["report"]["methods"]["model"]
                    print(
                        f"{series:13} H {horizon:3} {arm:14} seed {seed}  model "
                        f"{model['mse_scaled']:.4f}  persistence "
                        f"{run['report']['methods']['persistence']['mse_scaled']:.4f}  "
                        f"skill {model['skill']:.3f}  {run['seconds']:.0f} s",
                        flush=True,
                    )
                    runs.append(run)
    rows = summary(runs)
    text = table(rows, args.split)
    (args.out / "table.md").write_text(text)
    document = {
        "machine": machine(),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "summary": rows,
        "runs": runs,
    }
    (args.out / "results.json").write_text(json.dumps(document, indent=1, default=float))
    print(text)


if __name__ == "__main__":
    torch.set_num_threads(1)  # a shared machine: one thread per run
    main_script()
