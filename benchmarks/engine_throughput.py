"""Training throughput of the tbptt Runner against the loops a user writes by hand.

Six ways to train the same network on the same token streams with TBPTT(k, k)
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

With resets, each (step, stream) starts a new sequence with probability 1/k: on
average one reset per stream per window. Every variant starts from a copy of the
same weights and gets the same chunks; the first window's loss and gradients are
asserted equal across variants before anything is timed. Throughput is tokens
(steps x streams) per second, the median over interleaved repeats.

    python benchmarks/engine_throughput.py            # ~1.5 min on a 2-core CPU
    python benchmarks/engine_throughput.py --quick    # ~15 s smoke run
    python benchmarks/engine_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from harness import (
    interleaved,
    machine,
    median,
    quartiles,
    steal_seconds,
    synchronize,
    write_json,
)
from torch import Tensor, nn

import tbptt

CELLS = {"elman": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
NETWORKS = {"elman": tbptt.models.Elman, "lstm": tbptt.models.LSTM, "gru": tbptt.models.GRU}

RATIOS = {  # name: (numerator, denominator), throughput over throughput
    "tbptt/plain": ("tbptt", "plain"),
    "resets/per-step": ("resets", "per-step"),
    "resets/plain": ("resets", "plain"),
    "split/packed": ("split", "packed"),
    "split/engine-split": ("split", "engine-split"),
    "plain/per-step": ("plain", "per-step"),  # the ceiling of resets/per-step: no resets
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
    Config("lstm-128x1", "lstm", 128, 1),
    Config("gru-256x1", "gru", 256, 1),
    Config("elman-256x1", "elman", 256, 1),
]


# --------------------------------------------------------------------------- models


class PlainNetwork(nn.Module):
    """The network as a user writes it: embedding, fused RNN, head; state (L, B, H)."""

    def __init__(self, network: tbptt.models.RecurrentNetwork) -> None:
        super().__init__()
        self.embedding, self.rnn, self.head = network.embedding, network.rnn, network.head

    def forward(self, inputs: Tensor, hidden):
        outputs, hidden = self.rnn(self.embedding(inputs), hidden)
        return self.head(outputs), hidden


class WithoutResets(nn.Module):
    """The built-in network behind a ``forward(x, state)`` without ``resets``, so the
    engine applies resets itself by splitting the window."""

    def __init__(self, network: tbptt.models.RecurrentNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: Tensor, state=None):
        return self.network(inputs, state)

    def initial_state(self, batch_size: int, device=None, dtype=None):
        return self.network.initial_state(batch_size, device=device, dtype=dtype)


class PerStepNetwork(nn.Module):
    """One cell per layer sharing the fused RNN's weights, stepped in a Python loop."""

    def __init__(self, network: tbptt.models.RecurrentNetwork) -> None:
        super().__init__()
        self.embedding, self.head = network.embedding, network.head
        self.lstm = network.cell == "lstm"
        rnn = network.rnn
        self.cells = nn.ModuleList()
        for layer in range(network.num_layers):
            cell = CELLS[network.cell](rnn.input_size if layer == 0 else rnn.hidden_size,
                                       rnn.hidden_size)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(cell, name, getattr(rnn, f"{name}_l{layer}"))  # shared Parameters
            self.cells.append(cell)

    def forward(self, inputs: Tensor, state: list, keep: Tensor):
        """``inputs: (T, B)``, ``state``: one per layer, ``keep: (T, B, 1)`` = 1 - reset."""
        features = self.embedding(inputs)
        outputs = []
        for step in range(features.shape[0]):
            layer_input = features[step]
            for layer, cell in enumerate(self.cells):
                if self.lstm:
                    h, c = state[layer]
                    state[layer] = cell(layer_input, (h * keep[step], c * keep[step]))
                    layer_input = state[layer][0]
                else:
                    state[layer] = cell(layer_input, state[layer] * keep[step])
                    layer_input = state[layer]
            outputs.append(layer_input)
        return self.head(torch.stack(outputs)), state


# --------------------------------------------------------------------------- loops


class Loop:
    """A training loop over a pool of chunks ``(inputs, targets, resets)``, each
    ``(k, B)``, cycled in order; :meth:`window` trains on the next chunk."""

    def __init__(self, model: nn.Module, chunks: list, optimizer: str, lr: float) -> None:
        self.model, self.chunks, self.position = model, chunks, 0
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        else:
            self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def window(self) -> Tensor:
        """Train on the next chunk; returns its loss (detached)."""
        chunk = self.chunks[self.position % len(self.chunks)]
        self.position += 1
        return self.train_step(*chunk).detach()

    def block(self, windows: int) -> None:
        for _ in range(windows):
            self.window()

    def train_step(self, inputs: Tensor, targets: Tensor, resets: Tensor) -> Tensor:
        raise NotImplementedError


class PlainLoop(Loop):
    """The loop every PyTorch language-model example writes; ignores resets."""

    def __init__(self, network, chunks, optimizer, lr) -> None:
        super().__init__(PlainNetwork(network), chunks, optimizer, lr)
        batch = chunks[0][0].shape[1]
        shape = (network.num_layers, batch, network.hidden_size)
        like = network.head.weight
        zeros = torch.zeros(shape, device=like.device, dtype=like.dtype)
        self.hidden = (zeros, zeros.clone()) if network.cell == "lstm" else zeros

    def train_step(self, inputs, targets, resets):
        logits, hidden = self.model(inputs, self.hidden)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if isinstance(hidden, tuple):
            self.hidden = tuple(h.detach() for h in hidden)
        else:
            self.hidden = hidden.detach()
        return loss


class RunnerLoop(Loop):
    """``tbptt.Runner`` with k1 = k2 = k on chunks of k steps: one window per chunk."""

    def __init__(self, model, chunks, optimizer, lr, k: int, resets: bool) -> None:
        super().__init__(model, chunks, optimizer, lr)
        self.runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=k, k2=k)
        self.use_resets = resets

    def train_step(self, inputs, targets, resets):
        resets = resets if self.use_resets else None
        for window in self.runner.windows(inputs, targets, resets=resets):
            self.optimizer.zero_grad()
            window.loss.backward()
            self.optimizer.step()
        return window.loss


class PerStepLoop(Loop):
    """Resets by hand: the state times (1 - reset) before every step."""

    def __init__(self, network, chunks, optimizer, lr) -> None:
        super().__init__(PerStepNetwork(network), chunks, optimizer, lr)
        batch = chunks[0][0].shape[1]
        like = network.head.weight
        zeros = torch.zeros(batch, network.hidden_size, device=like.device, dtype=like.dtype)
        lstm = network.cell == "lstm"
        self.state = [(zeros, zeros) if lstm else zeros for _ in range(network.num_layers)]

    def train_step(self, inputs, targets, resets):
        keep = (1.0 - resets.float()).unsqueeze(-1)
        logits, state = self.model(inputs, self.state, keep)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.state = [
            tuple(s.detach() for s in layer) if isinstance(layer, tuple) else layer.detach()
            for layer in state
        ]
        return loss


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

    return {
        "plain": PlainLoop(copy.deepcopy(network), chunks, *fit),
        "tbptt": runner(copy.deepcopy(network), resets=False),
        "resets": runner(copy.deepcopy(network), resets=True),
        "split": runner(with_strategy("split"), resets=True),
        "packed": runner(with_strategy("packed"), resets=True),
        "engine-split": runner(WithoutResets(copy.deepcopy(network)), resets=True),
        "per-step": PerStepLoop(copy.deepcopy(network), chunks, *fit),
    }


def gradients(loop: Loop) -> list[Tensor]:
    """The gradients left by the loop's last window, in a layout shared by all loops:
    embedding, then per layer (weight_ih, weight_hh, bias_ih, bias_hh), then head."""
    model = loop.model
    network = getattr(model, "network", model)
    rnn = getattr(network, "rnn", None)
    if rnn is None:  # per-step: the cells hold the fused RNN's parameters
        recurrent = [getattr(cell, name) for cell in network.cells
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    else:
        recurrent = [getattr(rnn, f"{name}_l{layer}") for layer in range(rnn.num_layers)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    params = [network.embedding.weight, *recurrent, network.head.weight, network.head.bias]
    return [p.grad for p in params]


def check_same_first_window(loops: dict[str, Loop], config: Config) -> dict[str, float]:
    """Train every loop on the first chunk (from the same weights) and assert that the
    variants compute the same loss and gradients: plain = tbptt without resets,
    resets = split = packed = engine-split = per-step with resets."""
    losses = {name: loop.window() for name, loop in loops.items()}
    same = {"plain": ["tbptt"], "resets": ["split", "packed", "engine-split", "per-step"]}
    for reference, others in same.items():
        for other in others:
            torch.testing.assert_close(
                losses[other], losses[reference], rtol=1e-5, atol=1e-6,
                msg=lambda m, a=other, b=reference: f"{config.name}: {a} loss != {b} loss: {m}",
            )
            for want, got in zip(gradients(loops[reference]), gradients(loops[other]),
                                 strict=True):
                torch.testing.assert_close(
                    got, want, rtol=1e-4, atol=1e-6,
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
    synchronize(device)
    steal_before, start = steal_seconds(), time.perf_counter()
    seconds = interleaved(
        {name: (lambda loop=loop: loop.block(args.windows)) for name, loop in loops.items()},
        args.repeats,
        device,
    )
    elapsed, steal_after = time.perf_counter() - start, steal_seconds()
    tokens = args.windows * config.k * config.batch_size
    throughput = {name: tokens / median(times) for name, times in seconds.items()}
    ratios = {name: throughput[a] / throughput[b] for name, (a, b) in RATIOS.items()}
    paired = {  # the ratio within each repeat (blocks adjacent in time): Q1, median, Q3
        name: quartiles([tb / ta for ta, tb in zip(seconds[a], seconds[b], strict=True)])
        for name, (a, b) in RATIOS.items()
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
        "targets_met": {name: ratios[name] >= target for name, target in TARGETS.items()},
    }


def report(result: dict) -> None:
    """Print one configuration's figures."""
    config, throughput = result["config"], result["tokens_per_second"]
    print(f"\n{config['name']}: {config['cell']} hidden {config['hidden_size']} x "
          f"{config['num_layers']} layers, vocab {config['vocab_size']}, "
          f"batch {config['batch_size']}, k {config['k']}, "
          f"{result['resets_per_stream_per_window']:.2f} resets/stream/window, "
          f"split into {result['split_pieces_per_window']:.1f} pieces/window")
    for name, value in throughput.items():
        print(f"  {name:<10} {value:>10.0f} tokens/s")
    for name, value in result["ratios"].items():
        low, _, high = result["paired_ratio_quartiles"][name]
        target = TARGETS.get(name)
        verdict = "" if target is None else f"  target >= {target:.3g}: " + (
            "met" if value >= target else "MISSED")
        print(f"  {name:<16} {value:6.3f}  (paired Q1-Q3 {low:.3f}-{high:.3f}){verdict}")
    if result["cpu_steal_fraction"] is not None:
        print(f"  cpu time stolen by the host while timing: "
              f"{result['cpu_steal_fraction']:.1%} of wall time")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~15 s smoke run")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (skipped without one)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results (default: benchmarks/results/"
                             "engine_throughput_<device>.json)")
    parser.add_argument("--configs", nargs="+", choices=[c.name for c in CONFIGS],
                        default=[c.name for c in CONFIGS])
    parser.add_argument("--windows", type=int, default=None,
                        help="windows per timed block (default 4, quick 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats (default 15, quick 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up windows per variant (default 2, quick 1)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    defaults = {"windows": (2, 4), "repeats": (3, 15), "warmup": (1, 2)}
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("engine_throughput: CUDA is not available here; skipping the cuda run.")
        return 0
    out = args.out or Path(__file__).parent / "results" / f"engine_throughput_{device.type}.json"
    description = machine(device)
    print(f"{description['cpu']} ({description['cpu_count']} cores), torch "
          f"{description['torch']}, {description['torch_num_threads']} threads, "
          f"device {device}" + (f" ({description['gpu']})" if "gpu" in description else ""))
    settings = {key: getattr(args, key) for key in
                ("quick", "windows", "repeats", "warmup", "optimizer", "lr", "seed")}
    results = []
    for config in CONFIGS:
        if config.name in args.configs:
            results.append(run_config(config, args, device))
            report(results[-1])
    payload = {"benchmark": "engine_throughput", "machine": description,
               "settings": settings, "targets": TARGETS, "results": results}
    print(f"\nwrote {write_json(out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
