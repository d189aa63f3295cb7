"""Training throughput of the Trainer's precision and compile options, side by side.

Four ways to train the same LSTM language model on the same token streams with
TBPTT(k, k), each through ``Trainer.train_batch`` (forward, backward, clipping and
an Adam step per window):

    fp32           the default: float32, eager (the plain PyTorch way)
    bf16           TrainConfig(precision="bf16"): forward under torch.autocast(bfloat16)
    compile        TrainConfig(compile=True): the forward passes through torch.compile
    compile+bf16   both

Every variant starts from a copy of the same weights and gets the same batches. The
compiled variants compile during their warm-up windows (the compile time is reported
separately); then the variants are timed interleaved, a block of windows each per
repeat. Throughput is tokens (steps x streams) per second, the median over repeats.
Before timing, the first window's loss of every variant is checked against fp32's.

    python benchmarks/precision_compile.py            # a few minutes on a 2-core CPU
    python benchmarks/precision_compile.py --quick    # a smoke run
    python benchmarks/precision_compile.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from harness import interleaved, machine, median, quartiles, steal_seconds, write_json

import tbptt
from tbptt.data import Streams
from tbptt.training.trainer import TrainConfig, Trainer

VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "compile": {"compile": True},
    "compile+bf16": {"compile": True, "precision": "bf16"},
}


def make_trainers(args: argparse.Namespace) -> tuple[dict[str, Trainer], list[tbptt.data.Batch]]:
    """One trainer per variant on copies of the same model, and the batches to time."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab, (args.batch * args.k * 64 + 1,), generator=gen)
    streams = Streams.language_model(tokens, args.batch, args.k)
    torch.manual_seed(0)
    model = tbptt.models.LSTM(args.hidden, vocab_size=args.vocab, num_layers=2)
    trainers = {
        name: Trainer(
            copy.deepcopy(model),
            tbptt.losses.cross_entropy,
            streams,
            TrainConfig(k1=args.k, device=args.device, **settings),
        )
        for name, settings in VARIANTS.items()
    }
    return trainers, list(streams.batches(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="few repeats, small sizes")
    parser.add_argument("--out", default=None, help="JSON path (default: results/)")
    args = parser.parse_args()
    args.k, args.batch, args.vocab = 32, 16, 64
    args.hidden = 64 if args.quick else 256
    repeats, block, warmup = (3, 1, 2) if args.quick else (9, 3, 3)
    device = torch.device(args.device)
    trainers, batches = make_trainers(args)

    first_loss, compile_seconds = {}, {}
    for name, trainer in trainers.items():
        start = time.perf_counter()
        for batch in batches[:warmup]:  # the compiled variants compile here
            trainer.train_batch(batch)
        compile_seconds[name] = time.perf_counter() - start
        first_loss[name] = trainer.progress.loss_sum / max(trainer.progress.loss_count, 1)
    for name, loss in first_loss.items():
        assert abs(loss - first_loss["fp32"]) < 0.05 * first_loss["fp32"], (name, loss)

    position = {name: warmup for name in trainers}

    def runner(name: str):
        def run() -> None:
            for _ in range(block):
                trainers[name].train_batch(batches[position[name] % len(batches)])
                position[name] += 1

        return run

    steal = steal_seconds()
    seconds = interleaved({name: runner(name) for name in trainers}, repeats, device)
    tokens = block * args.k * args.batch
    results = {}
    for name, times in seconds.items():
        low, middle, high = quartiles(times)
        results[name] = {
            "tokens_per_second": tokens / median(times),
            "tokens_per_second_quartiles": [tokens / high, tokens / low],
            "speedup_vs_fp32": median(seconds["fp32"]) / median(times),
            "warmup_seconds": compile_seconds[name],
            "warmup_loss": first_loss[name],
        }
        print(
            f"{name:13} {results[name]['tokens_per_second']:10.0f} tokens/s  "
            f"x{results[name]['speedup_vs_fp32']:.2f} vs fp32  "
            f"warm-up {compile_seconds[name]:.1f} s"
        )
    after = steal_seconds()
    payload = {
        "benchmark": "precision_compile",
        "machine": machine(device),
        "settings": {
            "model": f"LSTM, 2 layers, hidden {args.hidden}, vocab {args.vocab}",
            "k1": args.k,
            "k2": args.k,
            "batch_size": args.batch,
            "repeats": repeats,
            "windows_per_block": block,
            "warmup_windows": warmup,
        },
        "results": results,
        "steal_seconds": None if steal is None or after is None else after - steal,
    }
    default = Path(__file__).parent / "results" / f"precision_compile_{device.type}.json"
    print("wrote", write_json(args.out or default, payload))


if __name__ == "__main__":
    main()
