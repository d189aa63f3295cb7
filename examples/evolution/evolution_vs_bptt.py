"""Gradient training against evolution: how much faster BPTT is than black-box search.

The same small Elman network (hidden 8, about 200 parameters) learns delayed recall
(output the symbol seen 3 steps ago) by three methods, each from the same initial
weights, until its training loss reaches the lowest of ``--targets`` or its budget
runs out:

- BPTT: full BPTT through each sequence (``tbptt.Runner`` with ``k1=None``) and Adam;
- OpenAI-ES (Salimans et al. 2017): antithetic Gaussian perturbations, centred-rank
  fitness shaping, Adam on the estimated gradient;
- CMA-ES (Hansen's ``cma`` package, when installed: ``pip install cma``).

Counted for each: wall time, loss evaluations (one forward pass over the whole
training batch; a BPTT update costs one forward and one backward) and updates.

    python examples/evolution/evolution_vs_bptt.py --out runs/evolution
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import tbptt
from tbptt.data import tasks
from tbptt.engine.runner import masked_mean

DELAY, SYMBOLS, HIDDEN, SEQUENCES = 3, 4, 8, 64


@dataclass
class Trace:
    """One method's run: loss against time and evaluations."""

    method: str
    seconds: list[float] = field(default_factory=list)
    evaluations: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def add(self, seconds: float, evaluations: int, loss: float) -> None:
        self.seconds.append(seconds)
        self.evaluations.append(evaluations)
        self.losses.append(loss)

    def reached(self, target: float) -> dict[str, float | int | None]:
        """Time and evaluations when the loss first reached ``target`` (None: never)."""
        for seconds, evaluations, loss in zip(
            self.seconds, self.evaluations, self.losses, strict=True
        ):
            if loss <= target:
                return {"seconds": seconds, "evaluations": evaluations}
        return {"seconds": None, "evaluations": None}


def make_problem(seed: int) -> tuple[torch.nn.Module, Callable[[], torch.Tensor], tasks.TaskData]:
    """The network (seeded) and a function giving its training loss."""
    data = tasks.delayed_recall(SEQUENCES, DELAY, steps=10 * DELAY, symbols=SYMBOLS, seed=seed)
    torch.manual_seed(seed)
    model = tbptt.models.Elman(HIDDEN, vocab_size=SYMBOLS)

    def loss() -> torch.Tensor:
        outputs, _ = model(data.inputs)
        return masked_mean(tbptt.losses.cross_entropy(outputs, data.targets), data.mask)[0]

    return model, loss, data


def run_bptt(seed: int, target: float, budget: float) -> Trace:
    model, loss_fn, data = make_problem(seed)
    runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=None)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    trace, start, evaluations = Trace("BPTT (full, Adam)"), time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        runner.reset()
        for window in runner.windows(data.inputs, data.targets, mask=data.mask):
            optimizer.zero_grad()
            window.loss.backward()
            optimizer.step()
            evaluations += 1
            trace.add(time.perf_counter() - start, evaluations, float(window.loss.detach()))
        if trace.losses[-1] <= target:
            break
    return trace


def run_openai_es(seed: int, target: float, budget: float, population: int = 50) -> Trace:
    model, loss_fn, _ = make_problem(seed)
    theta = parameters_to_vector(model.parameters()).detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([theta], lr=0.03)
    generator = torch.Generator().manual_seed(seed)
    sigma, pairs = 0.05, population // 2
    ranks = torch.linspace(-0.5, 0.5, 2 * pairs)  # centred ranks, best last
    trace, start, evaluations = Trace("OpenAI-ES"), time.perf_counter(), 0
    with torch.no_grad():
        while time.perf_counter() - start < budget:
            noise = torch.randn(pairs, theta.numel(), generator=generator)
            noise = torch.cat([noise, -noise])
            fitness = torch.empty(2 * pairs)
            for i, epsilon in enumerate(noise):
                vector_to_parameters(theta + sigma * epsilon, model.parameters())
                fitness[i] = -loss_fn()
            evaluations += 2 * pairs
            shaped = torch.empty_like(fitness)
            shaped[fitness.argsort()] = ranks
            theta.grad = -(shaped @ noise) / (2 * pairs * sigma)  # Adam minimises
            optimizer.step()
            vector_to_parameters(theta, model.parameters())
            loss = float(loss_fn())
            evaluations += 1
            trace.add(time.perf_counter() - start, evaluations, loss)
            if loss <= target:
                break
    return trace


def run_cma_es(seed: int, target: float, budget: float) -> Trace | None:
    if importlib.util.find_spec("cma") is None:
        return None
    import cma

    model, loss_fn, _ = make_problem(seed)
    x0 = parameters_to_vector(model.parameters()).detach().double().numpy()
    options = {"seed": seed + 1, "verbose": -9, "tolfun": 0, "tolx": 0}
    strategy = cma.CMAEvolutionStrategy(x0, 0.1, options)
    trace, start, evaluations = Trace("CMA-ES"), time.perf_counter(), 0

    def evaluate(x: np.ndarray) -> float:
        vector_to_parameters(torch.as_tensor(x, dtype=torch.float32), model.parameters())
        return float(loss_fn())

    with torch.no_grad():
        while time.perf_counter() - start < budget:
            candidates = strategy.ask()
            values = [evaluate(x) for x in candidates]
            strategy.tell(candidates, values)
            evaluations += len(candidates)
            loss = evaluate(strategy.mean)
            evaluations += 1
            trace.add(time.perf_counter() - start, evaluations, loss)
            if loss <= target:
                break
    return trace


def plot(traces: list[Trace], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (by_time, by_count) = plt.subplots(1, 2, figsize=(10, 4))
    for trace in traces:
        by_time.plot(trace.seconds, trace.losses, label=trace.method)
        by_count.plot(trace.evaluations, trace.losses, label=trace.method)
    for axes, label in ((by_time, "wall time (s)"), (by_count, "loss evaluations")):
        axes.axhline(target, color="gray", linestyle=":", label="target")
        axes.set(xscale="log", yscale="log", xlabel=label, ylabel="training loss (nats)")
        axes.legend()
    figure.suptitle(f"Elman network ({HIDDEN} units) on delayed recall (delay {DELAY})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def table(traces: list[Trace], targets: list[float]) -> tuple[str, list[dict]]:
    """Seconds and evaluations each method took to reach each target loss."""
    header = f"{'method':>18} {'final loss':>11}" + "".join(
        f"{'loss <= ' + format(t, 'g'):>22}" for t in targets
    )
    lines, rows = [header], []
    for trace in traces:
        cells = ""
        for target in targets:
            reached = trace.reached(target)
            rows.append({"method": trace.method, "target": target, **reached})
            cells += (
                f"{'never':>22}"
                if reached["seconds"] is None
                else f"{reached['seconds']:>9.2f}s {reached['evaluations']:>7} evals"
            )
        lines.append(f"{trace.method:>18} {trace.losses[-1]:>11.4f}{cells}")
    return "\n".join(lines), rows


QUICK = {"budget": 1.0}
"""``--quick``: every method, the table and the plot in under a minute; too short a budget
for the evolution strategies to reach the targets."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--targets", type=float, nargs="+", default=[1.0, 0.5, 0.2, 0.05], help="losses (nats)"
    )
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per method")
    parser.add_argument("--seed", type=int, default=0, help="seeds data and weights")
    parser.add_argument("--out", default="runs/evolution", help="folder for results and plot")
    parser.add_argument("--quick", action="store_true", help=f"tiny settings: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:  # the quick settings, under any option given explicitly
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: one thread is fastest, and fair to each method
    lowest = min(args.targets)
    runs = [
        run_bptt(args.seed, lowest, args.budget),
        run_openai_es(args.seed, lowest, args.budget),
        run_cma_es(args.seed, lowest, args.budget),
    ]
    traces = [trace for trace in runs if trace is not None]
    text, rows = table(traces, sorted(args.targets, reverse=True))
    print(f"chance: {np.log(SYMBOLS):.3f} nats; budget {args.budget:g} s per method")
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "settings": {**vars(args), "delay": DELAY, "hidden": HIDDEN, "sequences": SEQUENCES},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
        "results": rows,
        "traces": [asdict(trace) for trace in traces],
    }
    (out / "results.json").write_text(json.dumps(report, indent=1))
    plot(traces, lowest, out / "evolution_vs_bptt.png")
    print(f"wrote {out / 'results.json'} and {out / 'evolution_vs_bptt.png'}")


if __name__ == "__main__":
    main()
