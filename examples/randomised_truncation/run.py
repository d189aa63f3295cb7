"""Randomised truncation (AWD-LSTM) against a fixed k on a character language model.

Trains the same character LSTM on a text with ``tbptt train``, once per (arm, seed):

- ``fixed``: TBPTT(k, k), windows of exactly k characters, at the same positions in
  every epoch;
- ``random``: ``--k1-std STD``, each window's length drawn from N(k, STD) (from
  N(k / 2, STD) one time in 20, Merity et al. 2018), with that update's learning
  rate scaled by its length over k, so window boundaries move from epoch to epoch.

Everything else (data, split, model, initialisation, optimizer, schedule, epochs) is
the same, so both arms see the same characters the same number of times. Writes
``results.json`` (every run's evaluations, the summary, settings, machine),
``table.md`` and ``curves.png`` (validation loss against passes over the data) to --out.

    python examples/randomised_truncation/run.py --text tinyshakespeare.txt --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

from tbptt.devices import machine

ARMS = ("fixed", "random")
BATCH_SIZE = 32


QUICK = {"k": 10, "std": 2.0, "hidden_size": 8, "epochs": 1, "eval_every": 5, "seeds": 1}
QUICK |= {"jobs": 1}
"""``--quick``: every stage (both arms, table, plot, JSON) in under a minute, on a generated
text unless --text is given; the figures mean nothing."""
QUICK_TEXT = "to be or not to be, that is the question.\n" * 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--text", help="a UTF-8 text, e.g. tinyshakespeare.txt (required)")
    parser.add_argument("--k", type=int, default=100, help="k, the (mean) window length")
    parser.add_argument("--std", type=float, default=5.0, help="the random arm's k1 std")
    parser.add_argument("--hidden-size", type=int, default=256, help="LSTM units")
    parser.add_argument("--num-layers", type=int, default=1, help="LSTM layers")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the text")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate")
    parser.add_argument("--eval-every", type=int, default=100, help="updates between evals")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", default="runs/randomised_truncation", help="results folder")
    parser.add_argument(
        "--quick", action="store_true", help=f"tiny settings, a generated text: {QUICK}"
    )
    args = parser.parse_args(argv)
    if args.quick:  # the quick settings, under any option given explicitly
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if args.text is None and args.quick:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        args.text = str(Path(args.out) / "quick.txt")
        Path(args.text).write_text(QUICK_TEXT)
    if args.text is None:
        parser.error("--text is required (or --quick, for a generated one)")
    if not Path(args.text).is_file():
        parser.error(f"--text {args.text}: no such file (download tinyshakespeare.txt first)")
    return args


def command(args: argparse.Namespace, arm: str, seed: int, run_dir: Path) -> list[str]:
    """The ``tbptt train`` command line of one run."""
    line = [sys.executable, "-m", "tbptt", "train", "--text", args.text]
    line += ["--validation-fraction", "0.1", "--batch-size", str(BATCH_SIZE), "--k1", str(args.k)]
    line += ["--hidden-size", str(args.hidden_size), "--num-layers", str(args.num_layers)]
    line += ["--dropout", str(args.dropout), "--epochs", str(args.epochs), "--lr", str(args.lr)]
    line += ["--schedule", "cosine", "--eval-every", str(args.eval_every), "--seed", str(seed)]
    line += ["--run-dir", str(run_dir), "--quiet"]
    return line + (["--k1-std", str(args.std)] if arm == "random" else [])


def train_one(job: tuple[argparse.Namespace, str, int, Path]) -> dict[str, Any]:
    """Run one training command; its evaluations from the run's metrics.jsonl."""
    args, arm, seed, out = job
    run_dir = out / f"{arm}_seed{seed}"
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    subprocess.run(command(args, arm, seed, run_dir), check=True, env=environment)
    seconds = time.perf_counter() - start
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    evals = [r for r in records if r["kind"] == "eval"]
    updates = max(r["window"] for r in records)
    return {
        "arm": arm,
        "seed": seed,
        "seconds": seconds,
        "updates": updates,
        "best_loss": min(r["loss"] for r in evals),
        "final_loss": evals[-1]["loss"],
        "curve": [(args.epochs * r["window"] / updates, r["loss"]) for r in evals],
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm: mean and spread over seeds of the best validation loss and the cost."""
    rows = []
    for arm in ARMS:
        cell = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"])
        if not cell:
            continue
        best = [r["best_loss"] for r in cell]
        rows.append(
            {
                "arm": arm,
                "best_loss": statistics.mean(best),
                "best_loss_std": statistics.stdev(best) if len(best) > 1 else 0.0,
                "per_seed": best,
                "updates": statistics.mean(r["updates"] for r in cell),
                "seconds": statistics.mean(r["seconds"] for r in cell),
            }
        )
    return rows


def paired_differences(runs: list[dict[str, Any]]) -> list[float]:
    """Best loss of random minus fixed, seed by seed (negative: random is better)."""
    by_key = {(r["arm"], r["seed"]): r["best_loss"] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    return [
        by_key[("random", s)] - by_key[("fixed", s)]
        for s in seeds
        if ("random", s) in by_key and ("fixed", s) in by_key
    ]


def table(rows: list[dict[str, Any]], differences: list[float]) -> str:
    """The summary as Markdown, with the paired difference."""
    lines = [
        "| arm | best validation loss (nats/char, mean ± std) | per seed | updates | time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        seeds = ", ".join(f"{v:.4f}" for v in r["per_seed"])
        lines.append(
            f"| {r['arm']} | {r['best_loss']:.4f} ± {r['best_loss_std']:.4f} | {seeds} "
            f"| {r['updates']:.0f} | {r['seconds']:.0f} |"
        )
    if differences:
        spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
        lines.append("")
        lines.append(
            f"random - fixed, paired by seed: {statistics.mean(differences):+.4f} ± "
            f"{spread:.4f} nats/char ({', '.join(f'{d:+.4f}' for d in differences)})"
        )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Validation loss against passes over the data, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (whole, tail) = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = {"fixed": "tab:blue", "random": "tab:orange"}
    for run in sorted(runs, key=lambda r: (r["arm"], r["seed"])):
        x, y = zip(*run["curve"], strict=True)
        label = run["arm"] if run["seed"] == 0 else None
        for axis in (whole, tail):
            axis.plot(x, y, color=colours[run["arm"]], alpha=0.8, label=label)
    last = [loss for run in runs for _, loss in run["curve"][len(run["curve"]) // 2 :]]
    tail.set_ylim(min(last) - 0.01, max(last) + 0.01)
    tail.set_xlim(max(x) / 2, max(x))
    for axis, title in ((whole, "validation loss"), (tail, "second half, zoomed")):
        axis.set(xlabel="passes over the training text", ylabel="nats per character", title=title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run_all(jobs: list[tuple[argparse.Namespace, str, int, Path]], at_once: int) -> list[dict]:
    """Every run, ``at_once`` at a time, each reported as it ends."""
    runs: list[dict[str, Any]] = []
    with ThreadPool(at_once) as pool:  # each job is a subprocess
        for run in pool.imap_unordered(train_one, jobs):
            runs.append(run)
            print(
                f"[{len(runs)}/{len(jobs)}] {run['arm']} seed {run['seed']}: best "
                f"{run['best_loss']:.4f} in {run['updates']} updates, {run['seconds']:.0f} s",
                flush=True,
            )
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(args, arm, seed, out) for seed in range(args.seeds) for arm in ARMS]
    threads = f"{args.threads} thread{'' if args.threads == 1 else 's'}"
    print(f"{len(jobs)} training runs, {args.jobs} at a time, {threads} each")
    start = time.perf_counter()
    try:
        runs = run_all(jobs, args.jobs)
    except subprocess.CalledProcessError as error:
        print(f"a training run failed (its error is above): {' '.join(error.cmd[1:])}")
        return 2
    total = time.perf_counter() - start
    rows, differences = summarize(runs), paired_differences(runs)
    print(table(rows, differences))
    print(f"total wall time {total:.0f} s")
    report = {
        "settings": vars(args) | {"batch_size": BATCH_SIZE},
        "commands": {arm: command(args, arm, 0, out / f"{arm}_seed0")[1:] for arm in ARMS},
        "machine": machine(),
        "wall_seconds": total,
        "summary": rows,
        "random_minus_fixed": differences,
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "table.md").write_text(table(rows, differences) + "\n")
    plot(runs, out / "curves.png")
    print(f"wrote {out}/results.json, table.md and curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
