"""``tbptt demo``: what truncation buys and what it costs, measured in about two minutes.

An LSTM learns delayed recall (:func:`tbptt.data.tasks.delayed_recall`): at every
step, output the symbol seen ``delay`` steps earlier, in sequences 50 times longer
than that. The same network, data, optimizer and number of passes are trained under
several truncations, and each is measured: recall accuracy on fresh sequences, wall
time, parameter updates, and activation memory (the bytes autograd saved for one
window's backward, counted exactly by :class:`tbptt.engine.memory.SavedTensors`).

What it shows, by the definition in ``semantics.md``: a loss step under TBPTT(k1, k2)
sees between k2 - k1 and k2 - 1 steps of history, so when k2 <= delay no gradient
links a target to its symbol and accuracy stays at chance; once k2 passes the delay
the network learns; full BPTT sees everything but pays memory in proportion to the
sequence length and makes one update per sequence, so in the same passes it learns
less. The result is a table on stdout and ``results.json`` and ``truncation.png`` in
``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import tbptt
from tbptt.cli.budget import PROBE_SEQUENCES, check_fits, task_bytes
from tbptt.cli.output import progress_bar
from tbptt.cli.rundata import task_streams
from tbptt.cli.threads import use_threads
from tbptt.data import tasks
from tbptt.data.streams import Batch
from tbptt.devices import device_of, machine
from tbptt.engine.memory import SavedTensors
from tbptt.errors import TBPTTError
from tbptt.figures import pyplot, save_figure
from tbptt.files import atomic_write
from tbptt.training.config import check_seed

TRUNCATIONS: tuple[tuple[int | None, int | None], ...] = (
    (5, 5),
    (10, 10),
    (10, 20),
    (25, 25),
    (50, 50),
    (None, None),
)
"""(k1, k2) of each run; (None, None) is full BPTT over each whole sequence."""
BATCH_SIZE, HIDDEN_SIZE, LEARNING_RATE, SYMBOLS = 32, 64, 1e-2, 4


@dataclass
class Result:
    """One truncation's measurements."""

    name: str
    k1: int
    k2: int
    updates: int
    accuracy: float
    seconds: float
    activation_mb: float
    """Peak bytes saved for one window's backward, in MiB."""


def data_bytes(args: argparse.Namespace) -> int:
    """About the bytes of the demo's data: its sequences, laid out as streams."""

    def make(delay: int) -> tasks.TaskData:
        return tasks.delayed_recall(
            PROBE_SEQUENCES, delay, steps=50 * delay, symbols=SYMBOLS, seed=0
        )

    return task_bytes(make, args.delay, 2 * args.sequences / PROBE_SEQUENCES)


def train(args: argparse.Namespace, k1: int | None, k2: int | None) -> Result:
    """Train a fresh LSTM under TBPTT(k1, k2) and measure it."""
    steps = 50 * args.delay
    data = tasks.delayed_recall(
        args.sequences, args.delay, steps=steps, symbols=SYMBOLS, seed=args.seed
    )
    streams = task_streams(data, BATCH_SIZE, k1 or steps, allow_short=False)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = tbptt.models.LSTM(HIDDEN_SIZE, vocab_size=data.input_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1, k2)
    meter, updates = SavedTensors(exclude=model.parameters()), 0
    label = f"TBPTT({k1}, {k2 or k1})" if k1 else "full BPTT"
    bar = progress_bar(args.epochs * len(streams), "window", desc=f"{label:>16}")
    start = time.perf_counter()
    with meter, bar:
        for epoch in range(args.epochs):
            for batch in streams.batches(epoch):
                updates += train_batch(runner, optimizer, batch.to(device), meter)
                bar.update()
    seconds = time.perf_counter() - start
    test = tasks.delayed_recall(256, args.delay, steps=steps, symbols=SYMBOLS, seed=args.seed + 1)
    with torch.no_grad():
        outputs, _ = model.eval()(test.inputs.to(device))  # no truncation at evaluation
    return Result(
        label,
        k1 or steps,
        k2 or steps,
        updates,
        tasks.delayed_recall_accuracy(outputs.cpu(), test),
        seconds,
        meter.peak_bytes / 2**20,
    )


def train_batch(
    runner: tbptt.Runner, optimizer: torch.optim.Optimizer, batch: Batch, meter: SavedTensors
) -> int:
    """One update per window of ``batch`` (on the runner's device), the gradient's norm
    clipped to 1; ``meter`` starts counting afresh after each backward, so its peak is
    one window's saved bytes. Returns the updates made."""
    updates = 0
    for window in runner.windows(batch):
        optimizer.zero_grad(set_to_none=True)
        window.loss.backward()
        meter.release()
        torch.nn.utils.clip_grad_norm_(runner.model.parameters(), 1.0)
        optimizer.step()
        updates += 1
    return updates


def table(results: list[Result], delay: int) -> str:
    """The results as a text table, full BPTT as the reference for the ratios."""
    full = next(result for result in results if result.name == "full BPTT")
    lines = [
        f"{'truncation':>16} {'history':>9} {'updates':>8} {'accuracy':>9} "
        f"{'time':>8} {'memory':>10} {'memory/full':>12}"
    ]
    for result in results:
        history = f"{result.k2 - result.k1}-{result.k2 - 1}"
        mark = " " if result.k2 > delay else "*"
        lines.append(
            f"{result.name:>16} {history:>8}{mark} {result.updates:>8} {result.accuracy:>9.3f} "
            f"{result.seconds:>7.1f}s {result.activation_mb:>8.2f}MB "
            f"{result.activation_mb / full.activation_mb:>12.3f}"
        )
    return "\n".join(lines)


def plot(results: list[Result], delay: int, symbols: int, path: Path) -> None:
    """Accuracy, time and activation memory against k2, as a PNG."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for result in results:
        overlap = result.k1 < result.k2
        left.plot(result.k2, result.accuracy, "s" if overlap else "o", color="C0")
        left.annotate(
            f"({result.k1}, {result.k2})",
            (result.k2, result.accuracy),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    left.axhline(1 / symbols, color="gray", linestyle=":", label="chance")
    left.axvline(delay, color="C3", linestyle="--", label=f"delay = {delay}")
    left.set(xscale="log", xlabel="k2 (steps a gradient flows back)", ylabel="recall accuracy")
    left.set_title("what truncation buys: accuracy")
    left.legend(loc="center left")
    k2s = [r.k2 for r in results]
    right.plot(k2s, [r.activation_mb for r in results], "o-", color="C1", label="memory (MiB)")
    right.set(xscale="log", yscale="log", xlabel="k2", ylabel="activation memory (MiB)")
    right.set_title("what it costs: memory and time")
    time_axis = right.twinx()
    time_axis.plot(k2s, [r.seconds for r in results], "s--", color="C2", label="time (s)")
    time_axis.set_ylabel("training time (s)")
    right.legend(loc="upper left")
    time_axis.legend(loc="lower right")
    save_figure(figure, path)


def main(args: argparse.Namespace) -> int:
    """Run the demo with the options of ``tbptt demo`` (:mod:`tbptt.cli.main`);
    returns the exit code."""
    if args.sequences % BATCH_SIZE:
        raise TBPTTError(
            f"--sequences must be a multiple of {BATCH_SIZE}, got {args.sequences}; "
            f"give {max(BATCH_SIZE, args.sequences // BATCH_SIZE * BATCH_SIZE)}"
        )
    device_of(args.device)  # a device this machine has, before anything runs
    check_seed("--seed", args.seed)
    use_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise TBPTTError(f"--out {out} is a file; give a folder for results.json and the plot")
    check_fits({"data": (data_bytes(args), "cpu")}, "lower --delay or --sequences")
    steps = 50 * args.delay
    print(
        f"delayed recall: output the symbol seen {args.delay} steps ago, over "
        f"{args.sequences} sequences of {steps} steps, {args.epochs} passes; "
        f"chance accuracy {1 / SYMBOLS:.2f}"
    )
    results = []
    for k1, k2 in TRUNCATIONS:
        if k2 is None or k2 < steps:
            results.append(train(args, k1, k2))
    print(table(results, args.delay))
    print(
        f"history: the steps of past a loss step sees (k2 - k1 to k2 - 1); "
        f"*: never reaches the delay of {args.delay}, so nothing can be learned."
    )
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "settings": {**vars(args), "steps": steps, "symbols": SYMBOLS},
        "machine": machine(args.device),
        "results": [asdict(result) for result in results],
    }
    with atomic_write(out / "results.json") as file:
        file.write(json.dumps(report, indent=2).encode())
    plot(results, args.delay, SYMBOLS, out / "truncation.png")
    print(f"wrote {out / 'results.json'} and {out / 'truncation.png'}")
    return 0
