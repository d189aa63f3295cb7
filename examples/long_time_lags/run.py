"""Hochreiter & Schmidhuber's long-lag tasks: LSTM against Elman, full BPTT against truncated.

Trains one small network per (task, cell, truncation k, seed) until it meets the 1997
paper's success criterion or runs out of training sequences, and reports the success
rate over seeds and the sequences it took, next to the paper's Table 1 and Table 9:

- ``reber``, the embedded Reber grammar (experiment 1): next-symbol prediction on 256
  training strings, with 256 test strings none of which is a training string; success
  when every symbol of every training and test string is predicted correctly (the
  legal next symbols' outputs are always the largest). The long lag: the T/P read at
  step 1 must be predicted again L - 3 steps later (at least 5 steps).
- ``order``, the temporal order problem (task 6a): sequences of ``ORDER_LENGTH``
  steps, X or Y at t1 in [10, 20] and t2 in [50, 60], the class of their order at the
  last step; fresh sequences for every batch; success when at most 3 of 2560 test
  sequences are wrong, a sequence being right when every class probability is within
  0.3 of its one-hot target.

Networks: "lstm" (8 units) starts with its input gates nearly shut and forget gates
open, after the paper's initialisation; "lstm-default" is the same with PyTorch's; "elman"
has 15 tanh units, as in the paper's table; all have about 700 weights. Adam, batches of
16, gradient norm clipped at 1. Truncation is TBPTT(k, k) over each sequence ("full":
full BPTT); k = 1 is Elman's (1990) own procedure, a gradient through one step only. A
window without a loss step (order, before the last window) makes no update.

    python examples/long_time_lags/run.py --jobs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import tbptt
from tbptt.cli.rundata import multi_label_loss
from tbptt.data import tasks
from tbptt.devices import machine

BATCH_SIZE, LEARNING_RATE = 16, 1e-2
ORDER_LENGTH, ORDER_TEST = 100, 2560
REBER_STRINGS = 256
HIDDEN = {"lstm": 8, "lstm-default": 8, "elman": 15}
"""Units per network: Elman 15 as in the paper's table; LSTM 8, about the same ~700 weights."""
GATE_BIAS = {"input": -3.0, "forget": 5.0}
"""The "lstm" network's initial gate biases, after the paper's: input gates start nearly
shut (H&S: -2 and -4), forget gates open (the 1997 cell had none: it never forgot).
"lstm-default" keeps PyTorch's initialisation."""
TABLE = {
    "reber": [
        ("RTRL, 3 units (Smith & Zipser 1989)", "some fraction", "173,000"),
        ("RTRL, 12 units", "some fraction", "25,000"),
        ("Elman net, 15 units (Cleeremans et al. 1989)", "0", "> 200,000"),
        ("RCC, 7-9 units (Fahlman 1991)", "50", "182,000"),
        ("LSTM, 4 blocks of 1 cell, lr 0.1", "100", "39,740"),
        ("LSTM, 3 blocks of 2 cells, lr 0.1", "100", "21,730"),
        ("LSTM, 3 blocks of 2 cells, lr 0.5", "100", "8,440"),
    ],
    "order": [("LSTM, 2 blocks of 2 cells, lr 0.5 (20 trials)", "100", "31,390")],
}
"""Hochreiter & Schmidhuber (1997), Table 1 and Table 9: method, % success, sequences."""
LAG_ACCURACY = {"reber": "final T/P right (chance 0.5)", "order": "class right (chance 0.25)"}
"""The accuracy on the long-lag prediction alone, whatever the rest."""


def reber_sets(seed: int) -> tuple[tasks.TaskData, tasks.TaskData]:
    """256 training strings and 256 test strings, none of them a training string."""
    train = tasks.embedded_reber(REBER_STRINGS, seed=seed)
    seen = {strings_key(train, i) for i in range(REBER_STRINGS)}
    pool = tasks.embedded_reber(40 * REBER_STRINGS, seed=seed + 10_000)
    fresh = [i for i in range(pool.mask.shape[1]) if strings_key(pool, i) not in seen]
    return train, columns(pool, torch.tensor(fresh[:REBER_STRINGS]))


def strings_key(data: tasks.TaskData, column: int) -> tuple[int, ...]:
    """The token ids of one string, without its padding."""
    return tuple(data.inputs[data.mask[:, column], column].tolist())


def columns(data: tasks.TaskData, index: Tensor) -> tasks.TaskData:
    """The sequences ``index`` of ``data``, trimmed to the longest of them."""
    steps = int(data.mask[:, index].sum(0).max())
    return tasks.TaskData(
        data.inputs[:steps, index],
        data.targets[:steps, index],
        data.mask[:steps, index],
        data.num_classes,
        data.input_size,
    )


class Task:
    """Batches, loss and success test of one task for one seed."""

    def __init__(self, name: str, seed: int) -> None:
        self.name, self.rng = name, np.random.default_rng(seed)
        if name == "reber":
            self.train, self.test = reber_sets(1000 * seed)
            self.loss_fn = multi_label_loss
        else:
            self.test = tasks.temporal_order(ORDER_TEST, ORDER_LENGTH, seed=1000 * seed + 1)
            self.loss_fn = tbptt.losses.cross_entropy
            self.drawn = 0

    def batch(self) -> tasks.TaskData:
        """``BATCH_SIZE`` training sequences: drawn from the 256 strings, or fresh."""
        if self.name == "reber":
            index = torch.from_numpy(self.rng.integers(0, REBER_STRINGS, BATCH_SIZE))
            return columns(self.train, index)
        self.drawn += 1
        seed = int(self.rng.integers(2**31)) + self.drawn
        return tasks.temporal_order(BATCH_SIZE, ORDER_LENGTH, seed=seed)

    @torch.no_grad()
    def score(self, model: torch.nn.Module) -> tuple[bool, float, float]:
        """(solved, the fraction of test sequences right by the paper's criterion, the
        long-lag accuracy: the order's largest output, or the final T/P of Reber)."""
        outputs, _ = model(self.test.inputs)
        if self.name == "order":
            right = tasks.temporal_order_correct(outputs, self.test)
            accuracy = tasks.temporal_order_accuracy(outputs, self.test)
            return int((~right).sum()) <= 3, float(right.float().mean()), accuracy
        test = tasks.reber_accuracy(outputs, self.test)
        train = tasks.reber_accuracy(model(self.train.inputs)[0], self.train)
        accuracy = tasks.reber_penultimate_accuracy(outputs, self.test)
        return test == 1.0 and train == 1.0, test, accuracy


def make_model(network: str, task: str) -> tbptt.models.RecurrentNetwork:
    """An "lstm" (with the paper's gate biases), "lstm-default" or "elman" network."""
    sizes = {"vocab_size": 7} if task == "reber" else {"vocab_size": 8, "output_size": 4}
    cell = "elman" if network == "elman" else "lstm"
    model = tbptt.models.RecurrentNetwork(cell, HIDDEN[network], **sizes)
    if network == "lstm":  # PyTorch's gate order in the biases: input, forget, cell, output
        hidden = HIDDEN[network]
        with torch.no_grad():
            model.rnn.bias_ih_l0[:hidden] = GATE_BIAS["input"]
            model.rnn.bias_ih_l0[hidden : 2 * hidden] = GATE_BIAS["forget"]
    return model


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train until success or ``max_sequences``; sequences and updates it took."""
    torch.set_num_threads(1)
    name, cell, k, seed = job["task"], job["cell"], job["k"], job["seed"]
    task = Task(name, seed)
    torch.manual_seed(seed)
    model = make_model(cell, name)
    optimizer = torch.optim.Adam(model.parameters(), lr=job["lr"])
    runner = tbptt.Runner(model, task.loss_fn, k, k)
    sequences = updates = 0
    solved, score, accuracy, start = False, 0.0, 0.0, time.perf_counter()
    while sequences < job["max_sequences"] and not solved:
        batch = task.batch()
        runner.reset()  # independent sequences: every batch starts from the zero state
        for window in runner.windows(batch.inputs, batch.targets, mask=batch.mask):
            optimizer.zero_grad(set_to_none=True)
            window.loss.backward()
            if int(window.count):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                updates += 1
        sequences += BATCH_SIZE
        if sequences % job["check_every"] == 0:
            solved, score, accuracy = task.score(model.eval())
            model.train()
    return {
        **job,
        "solved": solved,
        "sequences": sequences,
        "updates": updates,
        "test_right": score,
        "lag_accuracy": accuracy,
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


REBER_ARMS = ["lstm:full", "lstm:5", "lstm-default:full", "elman:full", "elman:1"]
ORDER_ARMS = ["lstm:full", "lstm:50", "lstm:10", "lstm-default:full", "elman:full"]
"""NETWORK:K, K a truncation length or "full" (k = 1: Elman's 1990 procedure)."""


def parse_arm(text: str) -> tuple[str, str]:
    """ "NETWORK:K" as (network, k); a clear error for anything else."""
    network, _, k = text.partition(":")
    if network not in HIDDEN or not (k == "full" or k.isdigit() and int(k) >= 1):
        raise SystemExit(f"arm {text!r}: write NETWORK:K, NETWORK one of {', '.join(HIDDEN)}")
    return network, k


QUICK = {"seeds": 1, "max_sequences": 64, "jobs": 1, "reber_arms": ["lstm:full", "elman:1"]}
QUICK |= {"order_arms": ["lstm-default:5"]}
"""``--quick``: every stage (both tasks, table, plot, JSON) in under a minute; too few
sequences to solve anything."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--tasks", nargs="+", default=["reber", "order"], choices=TABLE, help="tasks"
    )
    parser.add_argument("--reber-arms", nargs="+", default=REBER_ARMS, help="NETWORK:K ...")
    parser.add_argument("--order-arms", nargs="+", default=ORDER_ARMS, help="NETWORK:K ...")
    parser.add_argument("--seeds", type=int, default=3, help="runs per arm")
    parser.add_argument("--max-sequences", type=int, default=100_000, help="per run")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE, help="Adam learning rate")
    parser.add_argument("--jobs", type=int, default=2, help="processes (1 thread each)")
    parser.add_argument("--out", default="runs/long_time_lags", help="results folder")
    parser.add_argument("--quick", action="store_true", help=f"tiny settings: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:  # the quick settings, under any option given explicitly
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    return args


def make_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One job per (task, cell, k, seed); the slow ones (order, Elman's k = 1) first."""
    jobs = [
        {"task": task, "cell": cell, "k": None if k == "full" else int(k), "k_label": k}
        | {"seed": seed, "lr": args.lr, "max_sequences": args.max_sequences}
        | {"check_every": 4 * BATCH_SIZE if task == "reber" else 16 * BATCH_SIZE}
        for task in args.tasks
        for cell, k in map(parse_arm, args.reber_arms if task == "reber" else args.order_arms)
        for seed in range(args.seeds)
    ]
    return sorted(jobs, key=lambda j: (j["task"] != "order", j["k"] != 1))


def order_of_arms(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs sorted by task, then arm as listed in the task's defaults, then seed."""

    def key(r: dict[str, Any]) -> tuple[bool, int, str, int]:
        arms = REBER_ARMS if r["task"] == "reber" else ORDER_ARMS
        arm = f"{r['cell']}:{r['k_label']}"
        return r["task"] != "reber", arms.index(arm) if arm in arms else len(arms), arm, r["seed"]

    return sorted(runs, key=key)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, cell, k): success rate, and the sequences the successes took."""
    rows = []
    keys = list(dict.fromkeys((r["task"], r["cell"], r["k_label"]) for r in order_of_arms(runs)))
    for task, cell, k in keys:
        cell_runs = [r for r in runs if (r["task"], r["cell"], r["k_label"]) == (task, cell, k)]
        wins = [r["sequences"] for r in cell_runs if r["solved"]]
        rows.append(
            {
                "task": task,
                "cell": cell,
                "k": k,
                "runs": len(cell_runs),
                "success_rate": len(wins) / len(cell_runs),
                "median_sequences": statistics.median(wins) if wins else None,
                "max_sequences": max(r["max_sequences"] for r in cell_runs),
                "test_right": statistics.mean(r["test_right"] for r in cell_runs),
                "lag_accuracy": statistics.mean(r["lag_accuracy"] for r in cell_runs),
                "parameters": cell_runs[0]["parameters"],
                "seconds": statistics.mean(r["seconds"] for r in cell_runs),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Our runs and the paper's rows, per task, as Markdown."""
    parts = []
    for task in dict.fromkeys(r["task"] for r in rows):
        lines = [
            f"**{task}**",
            "",
            "| method | weights | success (%) | sequences to success (median) "
            f"| test right (mean) | {LAG_ACCURACY[task]} (mean) | time per run (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["task"] == task):
            k = "full BPTT" if r["k"] == "full" else f"TBPTT({r['k']}, {r['k']})"
            median = "-" if r["median_sequences"] is None else f"{r['median_sequences']:,.0f}"
            lines.append(
                f"| tbptt: {r['cell']}, {k}, Adam ({r['runs']} "
                f"seed{'' if r['runs'] == 1 else 's'}) | {r['parameters']} "
                f"| {100 * r['success_rate']:.0f} | {median} (of {r['max_sequences']:,} at most) "
                f"| {r['test_right']:.3f} | {r['lag_accuracy']:.3f} | {r['seconds']:.0f} |"
            )
        for method, success, sequences in TABLE[task]:
            lines.append(f"| H&S 1997: {method} | | {success} | {sequences} | | | |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Per task: success rate and median sequences to success of each (cell, k)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    task_names = list(dict.fromkeys(r["task"] for r in rows))
    figure, axes = plt.subplots(1, len(task_names), figsize=(6 * len(task_names), 4), squeeze=False)
    for axis, task in zip(axes[0], task_names, strict=True):
        cells = [r for r in rows if r["task"] == task]
        labels = [f"{r['cell']}\n{'full' if r['k'] == 'full' else 'k=' + r['k']}" for r in cells]
        palette = {"lstm": "tab:blue", "lstm-default": "tab:cyan", "elman": "tab:orange"}
        colours = [palette[r["cell"]] for r in cells]
        bars = axis.bar(labels, [100 * r["success_rate"] for r in cells], color=colours)
        for bar, r in zip(bars, cells, strict=True):
            median = r["median_sequences"]
            text = "none solved" if median is None else f"{median / 1000:.1f}k seq"
            axis.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        axis.set(ylim=(0, 110), ylabel="runs solved (%)", title=f"{task}: success over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(args)
    print(f"{len(jobs)} training runs on {args.jobs} processes")
    start, runs = time.perf_counter(), []
    with Pool(args.jobs) as pool:
        for run in pool.imap_unordered(train_one, jobs):
            runs.append(run)
            outcome = f"solved after {run['sequences']:,}" if run["solved"] else "not solved"
            print(
                f"[{len(runs)}/{len(jobs)}] {run['task']} {run['cell']} k={run['k_label']} "
                f"seed {run['seed']}: {outcome} (test right {run['test_right']:.3f}, "
                f"long-lag accuracy {run['lag_accuracy']:.3f}, "
                f"{run['seconds']:.0f} s)",
                flush=True,
            )
    total = time.perf_counter() - start
    rows = summarize(runs)
    print(table(rows))
    print(f"total wall time {total:.0f} s")
    report = {
        "settings": vars(args)
        | {"batch_size": BATCH_SIZE, "hidden": HIDDEN}
        | {"order_length": ORDER_LENGTH, "order_test": ORDER_TEST, "reber_strings": REBER_STRINGS},
        "machine": machine(),
        "wall_seconds": total,
        "summary": rows,
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "table.md").write_text(table(rows) + "\n")
    plot(rows, out / "success.png")
    print(f"wrote {out}/results.json, table.md and success.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
