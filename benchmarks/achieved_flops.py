"""Achieved FLOP/s of an LSTM training step against this machine's matrix-multiply peak.

The physical limit is measured, not taken from a data sheet: ``torch.mm`` of large
float32 square matrices (2N^3 FLOPs each), the best median over the sizes tried. An
LSTM training step (``tbptt.Runner`` window of T steps: forward and backward, no
optimizer step) is timed for several hidden sizes, and its matrix-multiply FLOPs are
counted analytically, per step and layer (I inputs, H hidden, B streams, V outputs):

    forward    2 B (I + H) 4H       the four gates from input and state
             + 2 B H V              the head
    backward   2x the forward       the gradients of the inputs and of the weights

so a window costs 3 x forward x T. The embedding lookup, the gate nonlinearities,
the loss and other elementwise work are not counted: the figure is the fraction of
the matrix-multiply peak that the step's matrix multiplies achieve, a lower bound on
how busy the machine is. For each configuration the script also times ``torch.mm``
at the step's own gate shape (B x (I + H) by (I + H) x 4H), the most a multiply that
small reaches here. All blocks are interleaved.

    python benchmarks/achieved_flops.py            # ~1 min on a 2-core CPU
    python benchmarks/achieved_flops.py --quick    # ~10 s smoke run
    python benchmarks/achieved_flops.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import harness
import torch

import tbptt

PEAK_SIZES = (1024, 2048, 4096)
HIDDEN_SIZES = (128, 256, 512, 1024)


def lstm_window_flops(hidden: int, batch: int, vocab: int, steps: int) -> int:
    """Matrix-multiply FLOPs of one LSTM window, forward and backward (embedding =
    hidden size, so the gates see I = H inputs)."""
    forward = 2 * batch * (hidden + hidden) * 4 * hidden + 2 * batch * hidden * vocab
    return 3 * forward * steps


def matmul(
    rows: int, inner: int, columns: int, device: torch.device, repeat: int
) -> tuple[Callable[[], None], int]:
    """A block of ``repeat`` float32 products ``(rows, inner) @ (inner, columns)`` and
    its FLOPs."""
    a = torch.randn(rows, inner, device=device)
    b = torch.randn(inner, columns, device=device)
    out = torch.empty(rows, columns, device=device)

    def block() -> None:
        for _ in range(repeat):
            torch.mm(a, b, out=out)

    return block, 2 * rows * inner * columns * repeat


def lstm_step(
    hidden: int, args: argparse.Namespace, device: torch.device
) -> tuple[Callable[[], None], int]:
    """A block of one LSTM training window of ``args.steps`` steps, and its FLOPs."""
    model = harness.token_network("lstm", hidden, args.vocab_size, device, args.seed)
    inputs, targets = harness.random_tokens(
        args.steps, args.batch_size, args.vocab_size, device, args.seed
    )
    runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=args.steps)

    def block() -> None:
        harness.train_chunk(runner, inputs, targets)
        model.zero_grad(set_to_none=True)

    return block, lstm_window_flops(hidden, args.batch_size, args.vocab_size, args.steps)


def measure(args: argparse.Namespace, device: torch.device) -> dict:
    """Interleaved blocks of the peak products, the LSTM steps and the gate-shape products."""
    blocks: dict[str, tuple[Callable[[], None], int]] = {}
    for size in args.peak_sizes:
        blocks[f"mm-{size}"] = matmul(size, size, size, device, repeat=max(1, 4096 // size))
    for hidden in args.hidden_sizes:
        blocks[f"lstm-{hidden}"] = lstm_step(hidden, args, device)
        blocks[f"gate-mm-{hidden}"] = matmul(
            args.batch_size, 2 * hidden, 4 * hidden, device, repeat=args.steps
        )
    for block, _ in blocks.values():
        for _ in range(args.warmup):
            block()
    seconds = harness.interleaved(
        {name: block for name, (block, _) in blocks.items()},
        args.repeats,
        device,
        clock=harness.CLOCKS[args.clock],
    )
    rates = {name: flops / harness.median(seconds[name]) for name, (_, flops) in blocks.items()}
    peak_name = max((f"mm-{size}" for size in args.peak_sizes), key=rates.__getitem__)
    peak = rates[peak_name]
    lstm = [
        {
            "hidden_size": hidden,
            "flops_per_window": blocks[f"lstm-{hidden}"][1],
            "seconds": seconds[f"lstm-{hidden}"],
            "flops_per_second": rates[f"lstm-{hidden}"],
            "fraction_of_peak": rates[f"lstm-{hidden}"] / peak,
            "gate_shape_mm_flops_per_second": rates[f"gate-mm-{hidden}"],
            "gate_shape_mm_fraction_of_peak": rates[f"gate-mm-{hidden}"] / peak,
        }
        for hidden in args.hidden_sizes
    ]
    square = [
        {"size": size, "seconds": seconds[f"mm-{size}"], "flops_per_second": rates[f"mm-{size}"]}
        for size in args.peak_sizes
    ]
    return {"peak_flops_per_second": peak, "peak_from": peak_name, "matmul": square, "lstm": lstm}


def report(result: dict) -> None:
    for row in result["matmul"]:
        print(f"torch.mm {row['size']:>5}^2 float32: {row['flops_per_second'] / 1e9:8.1f} GFLOP/s")
    print(f"peak: {result['peak_flops_per_second'] / 1e9:.1f} GFLOP/s ({result['peak_from']})")
    print(f"{'LSTM hidden':<12}{'GFLOP/s':>9}{'of peak':>9}{'gate-shape mm':>15}{'of peak':>9}")
    for row in result["lstm"]:
        print(
            f"{row['hidden_size']:<12}{row['flops_per_second'] / 1e9:>9.1f}"
            f"{row['fraction_of_peak']:>9.1%}"
            f"{row['gate_shape_mm_flops_per_second'] / 1e9:>15.1f}"
            f"{row['gate_shape_mm_fraction_of_peak']:>9.1%}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser, quick="a ~10 s smoke run")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--steps", type=int, default=64, help="steps per window")
    parser.add_argument(
        "--repeats", type=int, default=None, help="interleaved repeats (default 9, quick 2)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="blocks per variant first")
    args = parser.parse_args(argv)
    args.hidden_sizes = args.hidden_sizes or ([128] if args.quick else list(HIDDEN_SIZES))
    args.peak_sizes = args.peak_sizes or ([1024] if args.quick else list(PEAK_SIZES))
    args.repeats = args.repeats or (2 if args.quick else 9)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = (
        "quick",
        "hidden_sizes",
        "peak_sizes",
        "batch_size",
        "vocab_size",
        "steps",
        "repeats",
        "warmup",
        "seed",
    )
    started = harness.start(
        "achieved_flops", args, keys, cell="lstm", num_layers=1, dtype="float32"
    )
    if started is None:
        return 0
    device, recording = started
    result = measure(args, device)
    report(result)
    recording.write(harness.results_path(args.out, "achieved_flops", device), **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
