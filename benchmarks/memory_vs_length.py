"""Peak memory and time against the sequence length T: full, checkpointed and truncated BPTT.

One LSTM (hidden 256, batch 32, 65 tokens) computes the gradient of one sequence of T
steps three ways, each with ``tbptt.Runner`` and no optimizer step:

    full        Runner(k1=None): one window of T steps, every step's activations
                kept for the backward pass (memory linear in T)
    checkpoint  Runner(k1=None, recompute=True): the same exact gradient, the window
                cut into segments of about sqrt(T) steps; only the state at segment
                boundaries is kept and each segment runs again in the backward pass
                (memory about sqrt(T), one extra forward pass)
    tbptt       Runner(k1=k, k2=k), k = 64: T/k windows, each with its own backward
                (memory flat in T; a truncated gradient, not the same one)

Each (method, T) runs in a fresh process, so peaks do not mix. Memory on the CPU is
the kernel's high-water mark of resident memory (VmHWM) minus the resident memory
just before the timed pass: torch imported, model and data built, one short warm-up
pass done (oneDNN primitives, gradient buffers), VmHWM reset. On CUDA it is
``torch.cuda.max_memory_allocated`` over the memory allocated at that point.
Before running full BPTT at a length, its peak is extrapolated linearly from the
longest length measured so far; it is skipped when that exceeds ``--limit-gb`` (or
80% of the memory available). Methods are interleaved within every length.

    python benchmarks/memory_vs_length.py            # ~8 min on a 2-core CPU
    python benchmarks/memory_vs_length.py --quick    # ~30 s smoke run
    python benchmarks/memory_vs_length.py --device cuda
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import harness
import torch

import tbptt

METHODS = ("full", "checkpoint", "tbptt")
LENGTHS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
WARMUP_STEPS = 64
CALIBRATION_STEPS = 300
"""Full BPTT runs this long first when asked for a longer length before any shorter."""


def has_checkpointing() -> bool:
    """Whether this tbptt's Runner takes ``recompute=`` (checkpointed BPTT)."""
    return "recompute" in inspect.signature(tbptt.Runner).parameters


def make_runner(method: str, model: torch.nn.Module, k: int) -> tbptt.Runner:
    """The Runner for ``method`` (see the module docstring)."""
    loss_fn = tbptt.losses.cross_entropy
    if method == "full":
        return tbptt.Runner(model, loss_fn, k1=None)
    if method == "checkpoint":
        return tbptt.Runner(model, loss_fn, k1=None, recompute=True)
    return tbptt.Runner(model, loss_fn, k1=k, k2=k)


# --------------------------------------------------------------------------- child


def baseline_bytes(device: torch.device) -> int:
    """Start measuring a peak here; returns the memory in use now."""
    harness.synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    harness.reset_peak_resident()
    return harness.resident_memory()["VmRSS"]


def peak_bytes(device: torch.device) -> int:
    """The most memory in use since :func:`baseline_bytes`."""
    harness.synchronize(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return harness.resident_memory()["VmHWM"]


def child(args: argparse.Namespace, device: torch.device) -> dict:
    """One method at one length in this process: peak memory over the baseline and
    the seconds of each pass (gradient of the whole sequence)."""
    model = harness.token_network("lstm", args.hidden_size, args.vocab_size, device, args.seed)
    inputs, targets = harness.random_tokens(
        args.length, args.batch_size, args.vocab_size, device, args.seed
    )
    warmup = min(WARMUP_STEPS, args.length)
    harness.train_chunk(make_runner(args.method, model, args.k), inputs[:warmup], targets[:warmup])
    baseline = baseline_bytes(device)
    seconds, clock = [], harness.CLOCKS[args.clock]
    for _ in range(args.passes):
        runner = make_runner(args.method, model, args.k)  # every pass from the initial state
        harness.synchronize(device)
        start = clock()
        windows = harness.train_chunk(runner, inputs, targets)
        harness.synchronize(device)
        seconds.append(clock() - start)
    return {
        "method": args.method,
        "length": args.length,
        "windows": windows,
        "baseline_bytes": baseline,
        "peak_bytes": peak_bytes(device) - baseline,
        "seconds": seconds,
    }


# --------------------------------------------------------------------------- parent


def check_same_gradient(args: argparse.Namespace, device: torch.device) -> float:
    """Assert that checkpointed BPTT gives full BPTT's gradient (float64, T = 200);
    returns the largest absolute difference."""
    model = harness.token_network("lstm", 32, args.vocab_size, device, args.seed).double()
    inputs, targets = harness.random_tokens(200, 4, args.vocab_size, device, args.seed)
    grads = []
    for method in ("full", "checkpoint"):
        model.zero_grad()
        harness.train_chunk(make_runner(method, model, args.k), inputs, targets)
        grads.append([p.grad.clone() for p in model.parameters()])
    for full, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(checkpointed, full, rtol=1e-10, atol=1e-12)
    return max(float((a - b).abs().max()) for a, b in zip(*grads, strict=True))


def memory_limit(args: argparse.Namespace, device: torch.device) -> int:
    """Bytes a run may be expected to take: ``--limit-gb``, and at most 80% of what is
    available now (the GPU's memory on CUDA)."""
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    return int(min(args.limit_gb * 1e9, 0.8 * available))


def estimate(rows: list[dict], method: str, length: int) -> int | None:
    """The peak of ``method`` at ``length``, linear in the length from the longest
    length measured so far (``None`` before any)."""
    done = [row for row in rows if row["method"] == method and "peak_bytes" in row]
    if not done:
        return None
    longest = max(done, key=lambda row: row["length"])
    return int(longest["peak_bytes"] * length / longest["length"])


def full_estimate(args, common: list[str], rows: list[dict], length: int) -> int | None:
    """Full BPTT's peak at ``length`` from the longest length measured; with none yet,
    from a first run at ``CALIBRATION_STEPS`` (kept in ``rows``)."""
    if estimate(rows, "full", length) is None and length > CALIBRATION_STEPS:
        short = [*common, "--length", str(CALIBRATION_STEPS)]  # the later --length wins
        row = harness.run_child(Path(__file__), ["--child", "full", *short])
        rows.append({**row, "calibration": True, "median_seconds": harness.median(row["seconds"])})
    return estimate(rows, "full", length)


def run_length(args, device: torch.device, length: int, rows: list[dict], limit: int) -> None:
    """Every method at one length, interleaved over ``--repeats`` fresh processes."""
    common = [
        "--device",
        str(device),
        "--length",
        str(length),
        "--k",
        str(args.k),
        "--hidden-size",
        str(args.hidden_size),
        "--batch-size",
        str(args.batch_size),
        "--vocab-size",
        str(args.vocab_size),
        "--seed",
        str(args.seed),
        "--clock",
        args.clock,
        *([] if args.threads is None else ["--threads", str(args.threads)]),
        "--passes",
        str(3 if length <= 1_000 else 1),
    ]
    repeats = args.repeats if length <= 10_000 else 1
    found: dict[str, list[dict]] = {}
    for repeat in range(repeats):
        order = args.methods if repeat % 2 == 0 else args.methods[::-1]
        for method in order:
            guess = full_estimate(args, common, rows, length) if method == "full" else None
            if guess is not None and guess > limit:
                found[method] = [
                    {
                        "skipped": f"estimated {guess / 1e9:.1f} GB > limit {limit / 1e9:.1f} GB",
                        "estimated_bytes": guess,
                    }
                ]
                continue
            found.setdefault(method, []).append(
                harness.run_child(Path(__file__), ["--child", method, *common])
            )
    for method, runs in found.items():
        row = {"method": method, "length": length, **runs[0]}
        if "seconds" in runs[0]:
            row["seconds"] = [s for run in runs for s in run["seconds"]]
            row["peak_bytes"] = max(run["peak_bytes"] for run in runs)
            row["peak_bytes_runs"] = [run["peak_bytes"] for run in runs]
            row["median_seconds"] = harness.median(row["seconds"])
        rows.append(row)
        print(describe(row), flush=True)


def describe(row: dict) -> str:
    head = f"T={row['length']:>7,} {row['method']:<10}"
    if "skipped" in row:
        return f"{head} skipped: {row['skipped']}"
    return (
        f"{head} peak {row['peak_bytes'] / 1e6:9.1f} MB  "
        f"{row['median_seconds']:8.3f} s  ({row['windows']} windows)"
    )


def summary(rows: list[dict], at: int) -> dict:
    """The checkpointing targets at length ``at``, and whether exact BPTT ran at the
    longest length."""
    by = {(row["method"], row["length"]): row for row in rows}
    full, checkpointed = by.get(("full", at)), by.get(("checkpoint", at))
    out: dict = {"length": at}
    if full and checkpointed and "peak_bytes" in full and "peak_bytes" in checkpointed:
        out["checkpoint_over_full_memory"] = checkpointed["peak_bytes"] / full["peak_bytes"]
        out["checkpoint_over_full_time"] = checkpointed["median_seconds"] / full["median_seconds"]
        out["memory_target_met"] = out["checkpoint_over_full_memory"] <= 0.10
        out["time_target_met"] = out["checkpoint_over_full_time"] <= 1.5
    longest = max(row["length"] for row in rows)
    exact = [
        row
        for row in rows
        if row["length"] == longest
        and "peak_bytes" in row
        and row["method"] in ("full", "checkpoint")
    ]
    out["exact_bptt_at_longest"] = {"length": longest, "ran": [row["method"] for row in exact]}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser, quick="a ~30 s smoke run (T up to 1,000)")
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=None,
        help="sequence lengths T (default 100 ... 100,000)",
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--k", type=int, default=64, help="TBPTT(k, k)'s window")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fresh processes per (method, T) up to T = 10,000, interleaved",
    )
    parser.add_argument(
        "--limit-gb",
        type=float,
        default=18.0,
        help="skip full BPTT where its extrapolated peak exceeds this",
    )
    parser.add_argument(
        "--summary-length",
        type=int,
        default=10_000,
        help="the T at which checkpointed is compared with full",
    )
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lengths is None:
        args.lengths = [100, 1_000] if args.quick else list(LENGTHS)
    if args.quick:
        args.repeats = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        args.method, device = args.child, torch.device(args.device)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        print(json.dumps(child(args, device)))
        return 0
    if "checkpoint" in args.methods and not has_checkpointing():
        print(
            "memory_vs_length: this tbptt has no Runner(recompute=...); "
            "measuring without checkpointed BPTT."
        )
        args.methods = [method for method in args.methods if method != "checkpoint"]
    keys = (
        "quick",
        "lengths",
        "methods",
        "hidden_size",
        "batch_size",
        "vocab_size",
        "k",
        "repeats",
        "limit_gb",
        "seed",
    )
    memory = (
        "VmHWM - VmRSS before the pass, glibc mmap threshold 64 KiB"
        if args.device == "cpu"
        else "torch.cuda.max_memory_allocated - memory_allocated"
    )
    started = harness.start(
        "memory_vs_length",
        args,
        keys,
        cell="lstm",
        num_layers=1,
        warmup_steps=WARMUP_STEPS,
        memory=memory,
    )
    if started is None:
        return 0
    device, recording = started
    checked = None
    if "checkpoint" in args.methods:
        checked = check_same_gradient(args, device)
        print(f"checkpointed gradient = full gradient (float64, T=200): max |diff| {checked:.1e}")
    limit, rows = memory_limit(args, device), []
    for length in sorted(args.lengths):
        run_length(args, device, length, rows, limit)
    result = summary(rows, args.summary_length)
    print(json.dumps(result, indent=2))
    recording.write(
        harness.results_path(args.out, "memory_vs_length", device),
        limit_bytes=limit,
        checkpoint_gradient_max_abs_diff=checked,
        summary=result,
        results=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
