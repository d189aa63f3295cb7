"""Truncation against dependency length: when does TBPTT(k, k) learn, and what does k cost?

Trains one small LSTM per (task, L, k, seed) on the copying memory problem and the
adding problem (``tbptt.data.tasks``), with the dependency length L and the truncation
k varied independently, then measures each on fresh sequences: copy accuracy on the
copied symbols (chance 1/4) or adding MSE (0.167 for always predicting 1), wall time,
parameter updates and activation memory (``tbptt.engine.memory.SavedTensors`` peak bytes).

- copy: ``COPY_LENGTH`` symbols, then blanks and a go marker placed so that every
  symbol is recalled exactly L steps after it was seen (delay = L - COPY_LENGTH - 1);
  sequences of T = L + COPY_LENGTH steps; loss on the recalled symbols only.
- adding: sequences of T = L steps, target at the last step; the first marker lies
  L/2 to L - 1 steps before it.

The LSTM (64 units, Adam, clipped gradients) starts with forget-gate biases of
``FORGET_BIAS`` so that its memory persists by default: without it, even full BPTT
stayed at chance on the copy task for L >= 25 in this budget.

k >= T (and "full") is full BPTT over each sequence: those cells are trained once
and shared. Windows with no loss step (the adding problem under short k) make no
update. Writes ``results.json`` and one PNG per task (metric, memory, time) to --out.

    python examples/truncation_vs_dependency/run.py --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import torch

import tbptt
from tbptt.cli.rundata import task_streams
from tbptt.data import tasks
from tbptt.devices import machine
from tbptt.engine.memory import SavedTensors

HIDDEN_SIZE, BATCH_SIZE, LEARNING_RATE = 64, 16, 1e-2
COPY_LENGTH, SYMBOLS = 3, 4
FORGET_BIAS = 3.0
TEST_SEQUENCES = 512
TASKS = ("copy", "adding")


def sequence_length(task: str, length: int) -> int:
    """Steps per sequence of ``task`` at dependency length ``length``."""
    return length + COPY_LENGTH if task == "copy" else length


def make_data(task: str, length: int, count: int, seed: int) -> tasks.TaskData:
    """``count`` sequences with dependency length ``length``; copy trains on the recall."""
    if task == "adding":
        return tasks.adding(count, length, seed=seed)
    delay = length - COPY_LENGTH - 1
    data = tasks.copy_memory(count, delay, symbols=SYMBOLS, copy_length=COPY_LENGTH, seed=seed)
    return dataclasses.replace(data, mask=data.targets != tasks.BLANK)


def metric(task: str, outputs: torch.Tensor, data: tasks.TaskData) -> float:
    """Copy accuracy on the copied symbols, or the adding problem's MSE."""
    if task == "copy":
        return tasks.copy_memory_accuracy(outputs, data)
    return tasks.adding_mse(outputs, data)


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train a fresh LSTM under TBPTT(k, k) (k None: full BPTT) and measure it."""
    torch.set_num_threads(1)
    task, length, k, seed = job["task"], job["length"], job["k"], job["seed"]
    steps = sequence_length(task, length)
    data = make_data(task, length, job["sequences"], seed=1000 * seed + length)
    streams = task_streams(data, BATCH_SIZE, k or steps, allow_short=False)
    torch.manual_seed(seed)
    if task == "copy":
        model = tbptt.models.LSTM(
            HIDDEN_SIZE, vocab_size=data.input_size, output_size=data.num_classes
        )
        loss_fn = tbptt.losses.cross_entropy
    else:
        model = tbptt.models.LSTM(HIDDEN_SIZE, input_size=2, output_size=1)
        loss_fn = tbptt.losses.mse
    with torch.no_grad():  # forget-gate bias (Gers et al. 2000): remember by default
        model.rnn.bias_ih_l0[HIDDEN_SIZE : 2 * HIDDEN_SIZE] = FORGET_BIAS
    optimizer = torch.optim.Adam(model.parameters(), lr=job["lr"])
    runner = tbptt.Runner(model, loss_fn, k, k)
    meter, updates = SavedTensors(exclude=model.parameters()), 0
    start = time.perf_counter()
    with meter:
        for epoch in range(job["epochs"]):
            for batch in streams.batches(epoch):
                for window in runner.windows(
                    batch.inputs, batch.targets, resets=batch.resets, mask=batch.mask
                ):
                    optimizer.zero_grad(set_to_none=True)
                    window.loss.backward()  # also frees the graph of a window without loss
                    meter.release()
                    if int(window.count) == 0:
                        continue
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    updates += 1
    seconds = time.perf_counter() - start
    test = make_data(task, length, TEST_SEQUENCES, seed=1000 * seed + length + 500)
    with torch.no_grad():
        outputs, _ = model.eval()(test.inputs)  # evaluation never truncates
    return {
        **job,
        "steps": steps,
        "metric": metric(task, outputs, test),
        "seconds": seconds,
        "updates": updates,
        "activation_mib": meter.peak_bytes / 2**20,
    }


def parse_k(text: str) -> int | None:
    """A truncation length, or None for "full"."""
    return None if text == "full" else int(text)


QUICK = {"lengths": [10], "ks": ["5", "full"], "seeds": 1, "epochs": 1, "sequences": 32}
QUICK |= {"jobs": 1}
"""``--quick``: every stage (training, table, plots, JSON) in under a minute; the figures mean
nothing."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="tasks")
    parser.add_argument(
        "--lengths", nargs="+", type=int, default=[10, 25, 50, 100], help="dependency lengths L"
    )
    parser.add_argument(
        "--ks", nargs="+", default=["5", "10", "25", "50", "100", "full"], help="truncations k"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell")
    parser.add_argument("--epochs", type=int, default=6, help="passes over the data")
    parser.add_argument("--sequences", type=int, default=2048, help="training sequences")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE, help="Adam learning rate")
    parser.add_argument("--jobs", type=int, default=2, help="processes (1 thread each)")
    parser.add_argument("--out", default="runs/truncation_vs_dependency", help="results folder")
    parser.add_argument("--quick", action="store_true", help=f"tiny settings: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:  # the quick settings, under any option given explicitly
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if min(args.lengths) < COPY_LENGTH + 1:
        parser.error(f"--lengths must be >= {COPY_LENGTH + 1} (the copy task's recall span)")
    if args.sequences % BATCH_SIZE:
        parser.error(f"--sequences must be a multiple of {BATCH_SIZE}")
    return args


def effective_k(task: str, length: int, k: int | None) -> int | None:
    """``k``, or None (full BPTT) when it spans a whole sequence."""
    return None if k is None or k >= sequence_length(task, length) else k


def make_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One job per distinct (task, L, effective k, seed), the longest first."""
    keys = {
        (task, length, effective_k(task, length, parse_k(k)), seed)
        for task in args.tasks
        for length in args.lengths
        for k in args.ks
        for seed in range(args.seeds)
    }
    jobs = [
        {"task": t, "length": n, "k": k, "seed": s, "epochs": args.epochs}
        | {"sequences": args.sequences, "lr": args.lr}
        for t, n, k, s in keys
    ]
    return sorted(jobs, key=lambda j: (-(j["length"] * 1000 // (j["k"] or 1000)), -j["length"]))


def summarize(args: argparse.Namespace, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, L, k): mean and spread over seeds of each measurement."""
    rows = []
    for task in args.tasks:
        for length in args.lengths:
            for k in args.ks:
                real = effective_k(task, length, parse_k(k))
                cell = [r for r in runs if (r["task"], r["length"], r["k"]) == (task, length, real)]
                row: dict[str, Any] = {"task": task, "length": length, "k": k}
                row["full_bptt"] = real is None
                for name in ("metric", "seconds", "updates", "activation_mib"):
                    values = [r[name] for r in cell]
                    row[name] = statistics.mean(values)
                    row[name + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                row["metric_per_seed"] = [
                    r["metric"] for r in sorted(cell, key=lambda r: r["seed"])
                ]
                rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| task | L | k | metric (mean ± std) | per seed | time (s) | updates | activation MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k = f"{r['k']} (= full)" if r["full_bptt"] and r["k"] != "full" else r["k"]
        seeds = ", ".join(f"{v:.3f}" for v in r["metric_per_seed"])
        lines.append(
            f"| {r['task']} | {r['length']} | {k} | {r['metric']:.3f} ± {r['metric_std']:.3f} "
            f"| {seeds} | {r['seconds']:.1f} | {r['updates']:.0f} | {r['activation_mib']:.2f} |"
        )
    return "\n".join(lines)


def plot(task: str, args: argparse.Namespace, rows: list[dict[str, Any]], path: Path) -> None:
    """Heat maps over (L, k): the metric with ±std, activation memory, wall time."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    cells = {(r["length"], r["k"]): r for r in rows if r["task"] == task}
    label = "copy accuracy (chance 0.25)" if task == "copy" else "adding MSE (baseline 0.167)"
    panels = (
        ("metric", label, "viridis" if task == "copy" else "viridis_r", "{:.2f}\n±{:.2f}"),
        ("activation_mib", "activation memory (MiB)", "Oranges", "{:.2f}"),
        ("seconds", "training time (s), updates", "Blues", "{:.0f}s\n{:.0f} upd"),
    )
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for axis, (name, title, cmap, fmt) in zip(axes, panels, strict=True):
        grid = [[cells[(n, k)][name] for k in args.ks] for n in args.lengths]
        limits = {"vmin": 0.0, "vmax": 1.0 if task == "copy" else 0.2} if name == "metric" else {}
        image = axis.imshow(grid, cmap=cmap, aspect="auto", **limits)
        figure.colorbar(image, ax=axis)
        for i, n in enumerate(args.lengths):
            for j, k in enumerate(args.ks):
                r = cells[(n, k)]
                second = r["metric_std"] if name == "metric" else r["updates"]
                text = fmt.format(r[name], second)
                if r["full_bptt"] and k != "full":
                    text += "\n=full"
                axis.text(j, i, text, ha="center", va="center", fontsize=7, color="gray")
        axis.set_xticks(range(len(args.ks)), args.ks)
        axis.set_yticks(range(len(args.lengths)), [str(n) for n in args.lengths])
        axis.set(xlabel="truncation k (TBPTT(k, k))", ylabel="dependency length L", title=title)
    figure.suptitle(f"{task}: mean over {args.seeds} seeds, {args.epochs} epochs")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(args)
    print(f"{len(jobs)} training runs on {args.jobs} processes")
    start = time.perf_counter()
    with Pool(args.jobs) as pool:
        runs = []
        for run in pool.imap_unordered(train_one, jobs):
            runs.append(run)
            print(
                f"[{len(runs)}/{len(jobs)}] {run['task']} L={run['length']} k={run['k'] or 'full'} "
                f"seed={run['seed']}: {run['metric']:.3f} in {run['seconds']:.1f}s",
                flush=True,
            )
    total = time.perf_counter() - start
    rows = summarize(args, runs)
    print(table(rows))
    print(f"total wall time {total:.0f} s")
    report = {
        "settings": {**vars(args), "hidden_size": HIDDEN_SIZE, "batch_size": BATCH_SIZE}
        | {"copy_length": COPY_LENGTH, "symbols": SYMBOLS}
        | {"test_sequences": TEST_SEQUENCES, "threads_per_process": 1}
        | {"forget_bias": FORGET_BIAS},
        "machine": machine(),
        "wall_seconds": total,
        "summary": rows,
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "table.md").write_text(table(rows) + "\n")
    for task in args.tasks:
        plot(task, args, rows, out / f"{task}.png")
    print(f"wrote {out}/results.json, table.md and " + ", ".join(f"{t}.png" for t in args.tasks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
