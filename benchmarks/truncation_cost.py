"""The cost of TBPTT(k1, k2) per loss step, against k2/k1 and against TBPTT(k2, k2).

TBPTT(k1, k2) updates every k1 steps and backpropagates k2 steps, so each window runs
k2 steps (k2 - k1 of them again, as history) for k1 steps of loss: it does k2/k1 times
the recurrent work of TBPTT(k2, k2) per loss step, plus k2/k1 times as many backward
calls and optimizer steps. This script trains one LSTM (hidden 256, batch 32, 65
tokens, SGD) with ``tbptt.Runner`` over chunks of T steps for several (k1, k2),
interleaved, and reports the time per loss step, its ratio to TBPTT(k2, k2) with the
same k2, and the ratio the step count predicts (steps run / loss steps, counted from
``tbptt.engine.windows.spans`` with the history carried between chunks).

    python benchmarks/truncation_cost.py            # ~1.5 min on a 2-core CPU
    python benchmarks/truncation_cost.py --quick    # ~10 s smoke run
    python benchmarks/truncation_cost.py --device cuda
"""

from __future__ import annotations

import argparse
import sys

import harness
import torch

import tbptt
from tbptt.engine.windows import spans

PAIRS = {  # k2: the k1 values measured with it (k1 = k2 is the reference)
    64: (64, 32, 16, 8, 4),
    128: (128, 64, 32, 16),
}


def steps_run_per_loss_step(steps: int, k1: int, k2: int) -> float:
    """Steps the model runs per loss step over a chunk of ``steps`` after the first
    (history of ``k2 - k1`` steps carried in), as the Runner lays the windows out."""
    history = k2 - k1
    windows = spans(steps + history, k1, k2, history=history)
    return sum(span.end - span.start for span in windows) / steps


def measure(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Time every (k1, k2) on the same chunks, interleaved; one row per pair."""
    inputs, targets = harness.random_tokens(
        args.steps, args.batch_size, args.vocab_size, device, args.seed
    )
    pairs = [(k1, k2) for k2, k1s in args.pairs.items() for k1 in k1s]
    runs = {}
    for k1, k2 in pairs:
        model = harness.token_network("lstm", args.hidden_size, args.vocab_size, device, args.seed)
        runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=k1, k2=k2)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

        def block(runner=runner, optimizer=optimizer) -> None:
            harness.train_chunk(runner, inputs, targets, optimizer)

        for _ in range(args.warmup):  # the first chunk also fills the carried history
            block()
        runs[f"TBPTT({k1},{k2})"] = block
    seconds = harness.interleaved(runs, args.repeats, device, clock=harness.CLOCKS[args.clock])
    rows = []
    for k1, k2 in pairs:
        name, reference = f"TBPTT({k1},{k2})", f"TBPTT({k2},{k2})"
        paired = [a / b for a, b in zip(seconds[name], seconds[reference], strict=True)]
        rows.append(
            {
                "k1": k1,
                "k2": k2,
                "k2_over_k1": k2 / k1,
                "steps_run_per_loss_step": steps_run_per_loss_step(args.steps, k1, k2),
                "windows_per_chunk": len(spans(args.steps, k1, k2)),
                "seconds": seconds[name],
                "microseconds_per_loss_step": 1e6 * harness.median(seconds[name]) / args.steps,
                "over_k2_k2": harness.median(seconds[name]) / harness.median(seconds[reference]),
                "over_k2_k2_paired_quartiles": harness.quartiles(paired),
            }
        )
    return rows


def report(rows: list[dict]) -> None:
    print(
        f"{'truncation':<16}{'k2/k1':>7}{'steps run/loss step':>21}"
        f"{'us/loss step':>14}{'/ TBPTT(k2,k2)':>16}"
    )
    for row in rows:
        low, _, high = row["over_k2_k2_paired_quartiles"]
        name = f"TBPTT({row['k1']},{row['k2']})"
        print(
            f"{name:<16}{row['k2_over_k1']:>7.2f}{row['steps_run_per_loss_step']:>21.2f}"
            f"{row['microseconds_per_loss_step']:>14.1f}{row['over_k2_k2']:>9.2f}"
            f" ({low:.2f}-{high:.2f})"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser, quick="a ~10 s smoke run")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per chunk, a multiple of every k1 (default 256, quick 64)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="interleaved repeats (default 7, quick 2)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="chunks per variant first")
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args(argv)
    args.steps = args.steps or (64 if args.quick else 256)
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.pairs = {16: (16, 4)} if args.quick else PAIRS
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = (
        "quick",
        "hidden_size",
        "batch_size",
        "vocab_size",
        "steps",
        "repeats",
        "warmup",
        "lr",
        "seed",
    )
    pairs = {str(k2): list(k1s) for k2, k1s in args.pairs.items()}
    started = harness.start(
        "truncation_cost", args, keys, cell="lstm", num_layers=1, optimizer="sgd", pairs=pairs
    )
    if started is None:
        return 0
    device, recording = started
    rows = measure(args, device)
    report(rows)
    recording.write(harness.results_path(args.out, "truncation_cost", device), results=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
