"""Does the advised k reach the accuracy of full BPTT at lower cost? Delayed recall.

An LSTM learns delayed recall (output the symbol seen ``DELAY`` steps ago, sequences
of ``STEPS`` steps). The same initial weights, data, optimizer (Adam, clipping) and
number of passes train under four rules for the truncation TBPTT(k, k):

- ``full``: full BPTT, k = STEPS.
- ``advised``: the first pass at a generous k = START_K (the model knows nothing yet,
  so its gradients say nothing of the delay); then every ADVISE_EVERY passes,
  :func:`tbptt.diagnostics.advise` on a fixed sample at the current parameters
  recommends the smallest candidate k with cosine >= 0.95 to the full gradient
  (full BPTT if none), and training continues with it.
- ``geometric``: the same schedule, k from the rule of Aicher, Foti & Fox (2019): the
  geometric decay rate of ||dL/dh|| fitted over lags, k = the smallest lag count
  whose geometric tail bias is at most sqrt(1 - 0.95^2) (full BPTT if rho >= 1).
- ``small``: a fixed k = DELAY / 2, shorter than the dependency, for contrast.

Measured per run: recall accuracy on fresh sequences after every pass, training
time, the time spent advising, and the peak activation memory of one window (the
bytes autograd saved, counted exactly by ``tbptt.engine.memory.SavedTensors``), per pass
and overall, and the k each rule picks before any training. Results go
to ``benchmarks/results/advised_k.json``; ``docs/diagnostics.md`` has the table.

    python benchmarks/advised_k.py
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from harness import machine, write_json

import tbptt
from tbptt import diagnostics
from tbptt.cli.demo import train_batch
from tbptt.cli.rundata import task_streams
from tbptt.data import tasks
from tbptt.engine.memory import SavedTensors

DELAY, STEPS, SYMBOLS = 8, 200, 4
SEQUENCES, BATCH, HIDDEN, LR, EPOCHS, START_K = 128, 32, 32, 1e-2, 12, 64
ADVISE_EVERY = 2
"""Passes between two calls of the advisor (the k is kept in between)."""
TOLERANCE = 0.95
CANDIDATES = [4, 8, 12, 16, 24, 32, 48, 64, 100]
RESULTS = Path(__file__).parent / "results" / "advised_k.json"


def recall(count: int, seed: int) -> tasks.TaskData:
    return tasks.delayed_recall(count, DELAY, steps=STEPS, symbols=SYMBOLS, seed=seed)


def train_pass(model, optimizer, data, k, epoch, meter) -> int:
    """One pass over ``data`` under TBPTT(k, k), as ``tbptt demo`` trains; returns the
    updates made."""
    streams = task_streams(data, BATCH, STEPS, allow_short=False)
    runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k)
    return sum(train_batch(runner, optimizer, batch, meter) for batch in streams.batches(epoch))


def choose(rule: str, model, sample) -> tuple[int, float]:
    """The k of ``rule`` for the next pass, and the seconds spent choosing it."""
    if rule == "full":
        return STEPS, 0.0
    if rule == "small":
        return DELAY // 2, 0.0
    start = time.perf_counter()
    advice = diagnostics.advise(
        model,
        tbptt.losses.cross_entropy,
        sample.inputs,
        sample.targets,
        [(k, k) for k in CANDIDATES],
        tolerance=TOLERANCE,
        mask=sample.mask,
        num_ends=4,
    )
    seconds = time.perf_counter() - start
    if rule == "advised":
        best = advice.recommended
        return (STEPS if best is None else best.k2), seconds
    lags = advice.geometric_horizon
    return (STEPS if lags is None else min(lags + 1, STEPS)), seconds


def run(rule: str, initial: torch.nn.Module) -> dict:
    model = copy.deepcopy(initial)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    train, sample, test = recall(SEQUENCES, 0), recall(8, 2), recall(256, 1)
    history, training, advising, updates, k = [], 0.0, 0.0, 0, START_K
    untrained = choose(rule, model, sample)[0]  # what the rule says before any training
    for epoch in range(EPOCHS):
        meter, seconds = SavedTensors(exclude=model.parameters()), 0.0
        if rule not in ("advised", "geometric"):
            k, _ = choose(rule, model, sample)
        elif epoch > 0 and epoch % ADVISE_EVERY == 0:
            k, seconds = choose(rule, model, sample)
        advising += seconds
        start = time.perf_counter()
        with meter:
            updates += train_pass(model.train(), optimizer, train, k, epoch, meter)
        training += time.perf_counter() - start
        with torch.no_grad():
            outputs, _ = model.eval()(test.inputs)
        accuracy = tasks.delayed_recall_accuracy(outputs, test)
        history.append(
            {
                "epoch": epoch,
                "k": k,
                "accuracy": accuracy,
                "seconds": training + advising,
                "train_seconds": training,
                "activation_mb": meter.peak_bytes / 2**20,
            }
        )
        print(f"{rule:>9} pass {epoch:2d}: k {k:3d}  accuracy {accuracy:.3f}", flush=True)
    return {
        "rule": rule,
        "accuracy": history[-1]["accuracy"],
        "train_seconds": training,
        "advise_seconds": advising,
        "updates": updates,
        "peak_activation_mb": max(h["activation_mb"] for h in history),
        "k_before_training": untrained,
        "history": history,
    }


def main() -> None:
    torch.manual_seed(0)
    initial = tbptt.models.LSTM(HIDDEN, vocab_size=SYMBOLS)
    results = [run(rule, initial) for rule in ("full", "advised", "geometric", "small")]
    full = results[0]
    print(
        f"{'rule':>9} {'accuracy':>9} {'train':>8} {'advise':>8} {'updates':>8} {'memory':>9} "
        f"{'full accuracy reached (train+advise)':>36}"
    )
    for result in results:
        reached = next((h for h in result["history"] if h["accuracy"] >= full["accuracy"]), None)
        result["full_accuracy_reached"] = reached and {
            "pass": reached["epoch"],
            "seconds": reached["seconds"],
            "train_seconds": reached["train_seconds"],
        }
        when = "never"
        if reached is not None:
            when = f"pass {reached['epoch']}, {reached['train_seconds']:.1f}+"
            when += f"{reached['seconds'] - reached['train_seconds']:.1f}s"
        print(
            f"{result['rule']:>9} {result['accuracy']:>9.3f} {result['train_seconds']:>7.1f}s "
            f"{result['advise_seconds']:>7.1f}s {result['updates']:>8} "
            f"{result['peak_activation_mb']:>7.2f}MB {when:>36}"
        )
    settings = {
        "delay": DELAY, "steps": STEPS, "symbols": SYMBOLS, "sequences": SEQUENCES,
        "batch": BATCH, "hidden": HIDDEN, "lr": LR, "epochs": EPOCHS, "start_k": START_K,
        "tolerance": TOLERANCE, "candidates": CANDIDATES,
    }  # fmt: skip
    write_json(
        RESULTS,
        {"machine": machine(torch.device("cpu")), "settings": settings, "results": results},
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
