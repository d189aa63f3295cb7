"""Training throughput of the tbptt Runner against the loops a user writes by hand.

Eight ways to train the same network on the same token streams with TBPTT(k, k)
(windows of k steps, the state carried across windows, detached), each doing
forward + backward + optimizer step per window:

    plain        nn.Embedding -> nn.LSTM -> nn.Linear called directly with the
                 (num_layers, B, H) state, F.cross_entropy, detach between windows
    tbptt        tbptt.Runner on the built-in model, the same chunks, no resets
    resets       tbptt.Runner with resets on the built-in model as it comes
                 (reset_strategy="auto": "split" on the CPU, "packed" on CUDA)
    split        the built-in model with reset_strategy="split": one fused call of the
                 recurrent layers between steps where some stream resets
    packed       the built-in model with reset_strategy="packed": every stream's
                 segments as sequences of one PackedSequence (tbptt.models.segments)
    engine-split the model behind a forward(x, state) that takes no resets: the
                 engine splits the window, embedding and head included, at every step
                 where some stream resets (tbptt.engine.unroll), as for a user model
    per-step     resets by hand: a Python loop over steps with one nn.LSTMCell (GRUCell,
                 RNNCell) per layer sharing the fused RNN's weights, the state
                 multiplied by (1 - reset) before each step (cells, because stepping
                 nn.LSTM one step at a time was about 2x slower still on this CPU)
    lightning    PyTorch Lightning 1.x's truncated_bptt_steps=k, its data flow
                 re-implemented: the batch arrives batch-first (B, T), tbptt_split_batch
                 cuts every tensor along time (tensor.split(k, dim=1)), and each split
                 runs training_step(split, hiddens) -> (loss, hiddens) through a
                 batch-first RNN, then backward, optimizer step, hiddens detached

With resets, each (step, stream) starts a new sequence with probability 1/k: on
average one reset per stream per window. Every variant starts from a copy of the
same weights and gets the same chunks; the first window's loss and gradients are
asserted equal across variants before anything is timed. Throughput is tokens
(steps x streams) per second, the median over interleaved repeats.

    python benchmarks/engine_throughput.py            # ~8 min on a 2-core CPU
    python benchmarks/engine_throughput.py --quick    # ~20 s smoke run
    python benchmarks/engine_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import asdict, dataclass

import harness
import torch
from loops import LightningLoop, Loop, PerStepLoop, PlainLoop, RunnerLoop, WithoutResets
from torch import Tensor, nn

import tbptt

NETWORKS = {"elman": tbptt.models.Elman, "lstm": tbptt.models.LSTM, "gru": tbptt.models.GRU}

RATIOS = {  # name: (numerator, denominator), throughput over throughput
    "tbptt/plain": ("tbptt", "plain"),
    "resets/per-step": ("resets", "per-step"),
    "resets/plain": ("resets", "plain"),
    "split/packed": ("split", "packed"),
    "split/engine-split": ("split", "engine-split"),
    "plain/per-step": ("plain", "per-step"),  # the ceiling of resets/per-step: no resets
    "tbptt/per-step": ("tbptt", "per-step"),  # without resets (per-step's mask is cheap)
    "tbptt/lightning": ("tbptt", "lightning"),
}

TARGETS = {
    "tbptt/plain": 0.98,  # the Runner costs at most 2% over the plain loop
    "resets/per-step": 3.0,  # fused resets at least 3x the per-step masked loop
    "resets/plain": 1 / 1.5,  # resets cost at most 1.5x the plain loop's time
}


@dataclass(frozen=True)
class Config:
    """One network and data shape to benchmark."""

    name: str
    cell: str
    hidden_size: int
    num_layers: int
    vocab_size: int = 65
    batch_size: int = 32
    k: int = 64


CONFIGS = [
    Config("lstm-256x2", "lstm", 256, 2),
    *(
        Config(f"{cell}-{size}x1", cell, size, 1)
        for cell in ("lstm", "gru", "elman")
        for size in (128, 256, 512)
    ),
]

VARIANTS = ("plain", "tbptt", "resets", "split", "packed", "engine-split", "per-step", "lightning")


# --------------------------------------------------------------------------- benchmark


def make_chunks(config: Config, count: int, device: torch.device, seed: int) -> list:
    """``count`` chunks of random tokens, targets and resets (probability 1/k each)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (config.k, config.batch_size)
    chunks = []
    for _ in range(count):
        inputs = torch.randint(config.vocab_size, shape, generator=generator)
        targets = torch.randint(config.vocab_size, shape, generator=generator)
        resets = torch.rand(shape, generator=generator) < 1.0 / config.k
        chunks.append((inputs.to(device), targets.to(device), resets.to(device)))
    return chunks


def make_loops(config: Config, chunks: list, args, device: torch.device) -> dict[str, Loop]:
    """The variants, each on its own copy of one freshly initialised network."""
    torch.manual_seed(args.seed)
    network = NETWORKS[config.cell](
        config.hidden_size, vocab_size=config.vocab_size, num_layers=config.num_layers
    ).to(device)
    fit = (args.optimizer, args.lr)

    def runner(model: nn.Module, resets: bool) -> RunnerLoop:
        return RunnerLoop(model, chunks, *fit, k=config.k, resets=resets)

    def with_strategy(strategy: str) -> nn.Module:
        model = copy.deepcopy(network)
        model.reset_strategy = strategy
        return model

    loops = {
        "plain": PlainLoop(copy.deepcopy(network), chunks, *fit),
        "tbptt": runner(copy.deepcopy(network), resets=False),
        "resets": runner(copy.deepcopy(network), resets=True),
        "split": runner(with_strategy("split"), resets=True),
        "packed": runner(with_strategy("packed"), resets=True),
        "engine-split": runner(WithoutResets(copy.deepcopy(network)), resets=True),
        "per-step": PerStepLoop(copy.deepcopy(network), chunks, *fit),
        "lightning": LightningLoop(
            copy.deepcopy(network), chunks, *fit, k=config.k, splits=args.windows
        ),
    }
    return {name: loops[name] for name in args.variants}


def gradients(loop: Loop) -> list[Tensor]:
    """The gradients left by the loop's last window, in a layout shared by all loops:
    embedding, then per layer (weight_ih, weight_hh, bias_ih, bias_hh), then head."""
    model = loop.model
    network = getattr(model, "network", model)
    rnn = getattr(network, "rnn", None)
    if rnn is None:  # per-step: the cells hold the fused RNN's parameters
        recurrent = [
            getattr(cell, name)
            for cell in network.cells
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
    else:
        recurrent = [
            getattr(rnn, f"{name}_l{layer}")
            for layer in range(rnn.num_layers)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
    params = [network.embedding.weight, *recurrent, network.head.weight, network.head.bias]
    return [p.grad for p in params]


def check_same_first_window(loops: dict[str, Loop], config: Config) -> dict[str, float]:
    """Train every loop on the first chunk (from the same weights) and assert that the
    variants compute the same loss and gradients: plain = tbptt without resets,
    resets = split = packed = engine-split = per-step with resets."""
    losses = {name: loop.window() for name, loop in loops.items()}
    same = {
        "plain": ["tbptt", "lightning"],
        "resets": ["split", "packed", "engine-split", "per-step"],
    }
    for reference, others in same.items():
        for other in (name for name in others if name in losses and reference in losses):
            torch.testing.assert_close(
                losses[other],
                losses[reference],
                rtol=1e-5,
                atol=1e-6,
                msg=lambda m, a=other, b=reference: f"{config.name}: {a} loss != {b} loss: {m}",
            )
            for want, got in zip(gradients(loops[reference]), gradients(loops[other]), strict=True):
                torch.testing.assert_close(
                    got,
                    want,
                    rtol=1e-4,
                    atol=1e-6,
                    msg=lambda m, a=other, b=reference: f"{config.name}: {a} grad != {b}: {m}",
                )
    return {name: float(loss) for name, loss in losses.items()}


def run_config(config: Config, args, device: torch.device) -> dict:
    """Check, warm up and time the variants on one configuration."""
    chunks = make_chunks(config, args.windows, device, args.seed)
    loops = make_loops(config, chunks, args, device)
    first_losses = check_same_first_window(loops, config)
    for loop in loops.values():  # warm-up (the check above was one window already)
        loop.block(args.warmup)
    harness.synchronize(device)
    steal_before, start = harness.steal_seconds(), time.perf_counter()
    seconds = harness.interleaved(
        {name: (lambda loop=loop: loop.block(args.windows)) for name, loop in loops.items()},
        args.repeats,
        device,
        clock=harness.CLOCKS[args.clock],
    )
    elapsed, steal_after = time.perf_counter() - start, harness.steal_seconds()
    tokens = args.windows * config.k * config.batch_size
    throughput = {name: tokens / harness.median(times) for name, times in seconds.items()}
    present = {name: pair for name, pair in RATIOS.items() if set(pair) <= set(loops)}
    ratios = {name: throughput[a] / throughput[b] for name, (a, b) in present.items()}
    paired = {  # the ratio within each repeat (blocks adjacent in time): Q1, median, Q3
        name: harness.quartiles([tb / ta for ta, tb in zip(seconds[a], seconds[b], strict=True)])
        for name, (a, b) in present.items()
    }
    resets = torch.stack([chunk[2] for chunk in chunks]).cpu()
    steal = None if steal_before is None else (steal_after - steal_before) / elapsed
    return {
        "config": asdict(config),
        "first_window_loss": first_losses,
        "resets_per_stream_per_window": float(resets.float().sum(1).mean()),
        "split_pieces_per_window": float(resets[:, 1:].any(2).sum(1).float().mean() + 1),
        "tokens_per_timed_block": tokens,
        "seconds": seconds,
        "tokens_per_second": throughput,
        "ratios": ratios,
        "paired_ratio_quartiles": paired,
        "timed_seconds": elapsed,
        "cpu_steal_fraction": steal,
        "targets_met": {
            name: ratios[name] >= target for name, target in TARGETS.items() if name in ratios
        },
    }


def report(result: dict) -> None:
    """Print one configuration's figures."""
    config, throughput = result["config"], result["tokens_per_second"]
    print(
        f"\n{config['name']}: {config['cell']} hidden {config['hidden_size']} x "
        f"{config['num_layers']} layers, vocab {config['vocab_size']}, "
        f"batch {config['batch_size']}, k {config['k']}, "
        f"{result['resets_per_stream_per_window']:.2f} resets/stream/window, "
        f"split into {result['split_pieces_per_window']:.1f} pieces/window"
    )
    for name, value in throughput.items():
        print(f"  {name:<10} {value:>10.0f} tokens/s")
    for name, value in result["ratios"].items():
        low, _, high = result["paired_ratio_quartiles"][name]
        target = TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else f"  target >= {target:.3g}: " + ("met" if value >= target else "MISSED")
        )
        print(f"  {name:<16} {value:6.3f}  (paired Q1-Q3 {low:.3f}-{high:.3f}){verdict}")
    if result["cpu_steal_fraction"] is not None:
        print(
            f"  cpu time stolen by the host while timing: "
            f"{result['cpu_steal_fraction']:.1%} of wall time"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser, quick="a ~20 s smoke run")
    parser.add_argument(
        "--configs", nargs="+", choices=[c.name for c in CONFIGS], default=[c.name for c in CONFIGS]
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--windows", type=int, default=None, help="windows per timed block (default 4, quick 2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="interleaved repeats (default 10, quick 3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up windows per variant (default 2, quick 1)"
    )
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args(argv)
    defaults = {"windows": (2, 4), "repeats": (3, 10), "warmup": (1, 2)}
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.quick and args.configs == [c.name for c in CONFIGS]:
        args.configs = ["lstm-128x1", "gru-128x1", "elman-128x1"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = ("quick", "windows", "repeats", "warmup", "optimizer", "lr", "seed", "variants")
    started = harness.start("engine_throughput", args, keys)
    if started is None:
        return 0
    device, recording = started
    results = []
    for config in CONFIGS:
        if config.name in args.configs:
            results.append(run_config(config, args, device))
            report(results[-1])
    recording.write(
        harness.results_path(args.out, "engine_throughput", device),
        targets=TARGETS,
        results=results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
