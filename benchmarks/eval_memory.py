"""Peak memory and time of evaluating a word language model: tbptt against the plain loop.

pytorch/examples' ``word_language_model`` evaluates in chunks of bptt = 35 steps, so
it never holds more than 35 steps of ``(T, B, V)`` logits. ``tbptt eval`` and the
trainer's validation read batches of 256 steps (``EVAL_STEPS``) and, since they run
the head and loss in slices of ``EVAL_SLICE_STEPS`` steps, hold only one slice's
logits at a time. This benchmark measures, each phase in a fresh process:

    train        TBPTT(35, 35) training windows of the same model (batch 20, SGD)
    eval_tbptt   Trainer.evaluate, as tbptt eval runs it (256-step batches, sliced)
    eval_whole   the same with one model call per 256-step batch (before slicing)
    eval_plain   pytorch/examples' evaluate loop (35-step chunks, state repackaged)

The model is the example's: a 2-layer LSTM of 200 units on WikiText-2's vocabulary
size (33,278). Memory depends on the sizes only, so the tokens are random ids. The
peak is the kernel's high-water mark of resident memory (VmHWM, reset after the model
and the trainer are built and the kernels warmed up) above the resident memory then:
what the phase itself allocates. The time is CPU time on one thread. Phases are
interleaved over ``--repeats``; the report is the median.

    python benchmarks/eval_memory.py                 # about 3 minutes on a 2-core CPU
    python benchmarks/eval_memory.py --quick         # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from harness import (
    RESULTS,
    machine,
    reset_peak_resident,
    resident_memory,
    run_child,
    token_network,
    write_json,
)

import tbptt
from tbptt.data import Streams
from tbptt.training import TrainConfig, Trainer, evaluation

PHASES = ("train", "eval_tbptt", "eval_whole", "eval_plain")
VOCABULARY = 33_278
"""WikiText-2's vocabulary, as pytorch/examples builds it."""
HIDDEN, LAYERS, BPTT, TRAIN_BATCH, EVAL_BATCH = 200, 2, 35, 20, 10
"""pytorch/examples' defaults: --nhid 200 --nlayers 2 --bptt 35, batch 20, eval batch 10."""


def phase(name: str, tokens: int) -> dict:
    """Run one phase in this process; its peak resident memory over the baseline."""
    torch.set_num_threads(1)
    model = token_network("lstm", HIDDEN, VOCABULARY, torch.device("cpu"), 0, LAYERS)
    ids = torch.randint(VOCABULARY, (tokens + 1,), generator=torch.Generator().manual_seed(0))
    streams = Streams.language_model(ids, batch_size=EVAL_BATCH, steps=256)
    trainer = Trainer(model, tbptt.losses.cross_entropy, streams, TrainConfig(k1=BPTT))
    if name == "eval_whole":
        evaluation.EVAL_SLICE_STEPS = 10**9  # what Trainer.evaluate slices by
    with torch.no_grad():
        model(ids[:2].view(2, 1))  # warm up the kernels before the baseline
    reset_peak_resident()  # what follows is the phase's own memory, nothing built before
    baseline = resident_memory()["VmRSS"]
    start = time.process_time()
    if name == "train":
        train(model, ids)
    elif name == "eval_plain":
        evaluate_plain(model, ids)
    else:
        trainer.evaluate(streams)
    seconds = time.process_time() - start
    return {"peak_bytes": resident_memory()["VmHWM"] - baseline, "cpu_seconds": seconds}


def train(model: tbptt.models.RecurrentNetwork, ids: torch.Tensor) -> None:
    """TBPTT(35, 35) over the tokens, one SGD step per window."""
    streams = Streams.language_model(ids, batch_size=TRAIN_BATCH, steps=BPTT)
    runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=BPTT)
    optimizer = torch.optim.SGD(model.parameters(), lr=20.0)
    for batch in streams:
        for window in runner.windows(batch.inputs, batch.targets):
            optimizer.zero_grad()
            window.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()


@torch.no_grad()
def evaluate_plain(model: tbptt.models.RecurrentNetwork, ids: torch.Tensor) -> float:
    """pytorch/examples' ``evaluate``: batchify, then 35-step chunks, state repackaged."""
    model.eval()
    steps = (len(ids) - 1) // EVAL_BATCH
    data = ids[: steps * EVAL_BATCH].view(EVAL_BATCH, steps).t()
    targets = ids[1 : steps * EVAL_BATCH + 1].view(EVAL_BATCH, steps).t()
    total, state = 0.0, None
    for start in range(0, steps, BPTT):
        logits, state = model(data[start : start + BPTT], state)
        chunk = targets[start : start + BPTT]
        total += len(chunk) * F.cross_entropy(logits.view(-1, VOCABULARY), chunk.reshape(-1))
        state = tbptt.detach(state)
    return float(total) / steps


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--tokens", type=int, default=None, help="default 40,000 (quick 3,000)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # a child's
    parser.add_argument("--out", type=Path, default=RESULTS / "eval_memory_cpu.json")
    args = parser.parse_args(argv)
    args.tokens = args.tokens or (3_000 if args.quick else 40_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase is not None:
        print(json.dumps(phase(args.phase, args.tokens)))
        return 0
    if not Path("/proc/self/clear_refs").exists():
        print("eval_memory: needs /proc/self/status and clear_refs (Linux); skipping.")
        return 0
    runs: dict[str, list[dict]] = {name: [] for name in PHASES}
    for repeat in range(args.repeats):
        order = PHASES if repeat % 2 == 0 else PHASES[::-1]
        for name in order:
            child = ["--phase", name, "--tokens", str(args.tokens)]
            runs[name].append(run_child(Path(__file__), child))
    summary = {
        name: {
            "peak_mb": statistics.median(r["peak_bytes"] for r in results) / 1e6,
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
        }
        for name, results in runs.items()
    }
    train_peak = summary["train"]["peak_mb"]
    print(f"{'phase':>11} {'peak MB':>9} {'/ train':>8} {'CPU s':>7}")
    for name, row in summary.items():
        ratio = row["peak_mb"] / train_peak
        print(f"{name:>11} {row['peak_mb']:9.1f} {ratio:8.2f} {row['cpu_seconds']:7.2f}")
    settings = {key: getattr(args, key) for key in ("quick", "tokens", "repeats")}
    settings.update(vocabulary=VOCABULARY, hidden=HIDDEN, layers=LAYERS, bptt=BPTT)
    settings.update(train_batch=TRAIN_BATCH, eval_batch=EVAL_BATCH, threads=1)
    payload = {"benchmark": "eval_memory", "machine": machine(torch.device("cpu"))}
    payload.update(settings=settings, summary=summary, runs=runs)
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
