"""Draw the benchmark figures (PNG) from the JSON results, nothing else.

    python benchmarks/plot.py                  # every results/<name>_cpu.json there is
    python benchmarks/plot.py --device cuda    # the *_cuda.json files

Each figure is written next to its JSON as ``results/<name>_<device>.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)
from matplotlib.axes import Axes  # noqa: E402

RESULTS = Path(__file__).parent / "results"

THROUGHPUT_VARIANTS = ("tbptt", "per-step", "lightning")
METHOD_ORDER = ("full", "checkpoint", "tbptt")


def machine_line(payload: dict) -> str:
    """A caption: where and when the figures were measured."""
    described = payload["machine"]
    load = payload.get("load_average", {}).get("before")
    load_text = "" if not load else f", load {load[0]:.1f} before"
    return (
        f"{described['cpu']}, {described['cpu_count']} cores, torch {described['torch']}, "
        f"{described['device']}, {described['date'][:10]}{load_text}"
    )


def engine_throughput(payload: dict, axes: Axes) -> None:
    """Throughput of each variant over the plain loop's, per configuration."""
    results = payload["results"]
    names = [row["config"]["name"] for row in results]
    width = 0.8 / len(THROUGHPUT_VARIANTS)
    for index, variant in enumerate(THROUGHPUT_VARIANTS):
        values = [
            row["tokens_per_second"].get(variant, float("nan")) / row["tokens_per_second"]["plain"]
            for row in results
        ]
        axes.bar([i + (index - 1) * width for i in range(len(names))], values, width, label=variant)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.axhline(0.98, color="gray", linestyle="--", linewidth=0.8, label="target tbptt 0.98")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_ylabel("throughput / plain PyTorch loop")
    axes.set_title("Training throughput, TBPTT(64, 64), no resets")
    axes.legend(loc="lower right")


def truncation_cost(payload: dict, axes: Axes) -> None:
    """Time per loss step over TBPTT(k2, k2)'s, against k2/k1."""
    rows = payload["results"]
    for k2 in sorted({row["k2"] for row in rows}):
        mine = [row for row in rows if row["k2"] == k2]
        axes.plot(
            [row["k2_over_k1"] for row in mine],
            [row["over_k2_k2"] for row in mine],
            "o-",
            label=f"k2 = {k2}",
        )
    top = max(row["k2_over_k1"] for row in rows)
    axes.plot([1, top], [1, top], color="gray", linestyle="--", label="k2/k1 (steps run)")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log", base=2)
    axes.set_xlabel("k2 / k1")
    axes.set_ylabel("time per loss step / TBPTT(k2, k2)")
    axes.set_title("Cost of TBPTT(k1, k2), LSTM 256, batch 32")
    axes.legend()


def memory_vs_length(payload: dict, figure_axes: tuple[Axes, Axes]) -> None:
    """Peak memory and time against T for each method, log-log (with the rows of the
    extra runs ``draw`` adds, such as a separate run at T = 100,000)."""
    memory_axes, time_axes = figure_axes
    rows = [row for row in payload["results"] if "peak_bytes" in row]
    for method in METHOD_ORDER:
        mine = sorted(
            (row for row in rows if row["method"] == method), key=lambda row: row["length"]
        )
        lengths = [row["length"] for row in mine]
        memory_axes.plot(lengths, [row["peak_bytes"] / 1e6 for row in mine], "o-", label=method)
        time_axes.plot(lengths, [row["median_seconds"] for row in mine], "o-", label=method)
    clock = "CPU seconds" if payload["settings"].get("clock") == "cpu" else "seconds"
    for axes, label in (
        (memory_axes, "peak memory over baseline (MB)"),
        (time_axes, f"{clock} per gradient of the sequence"),
    ):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("sequence length T")
        axes.set_ylabel(label)
        axes.legend()
    memory_axes.set_title("Peak memory, LSTM 256, batch 32")
    time_axes.set_title("Time")


def achieved_flops(payload: dict, axes: Axes) -> None:
    """Fraction of the measured matrix-multiply peak, per hidden size."""
    rows = payload["lstm"]
    positions = range(len(rows))
    axes.bar(
        [p - 0.2 for p in positions],
        [row["fraction_of_peak"] for row in rows],
        0.4,
        label="LSTM training step",
    )
    axes.bar(
        [p + 0.2 for p in positions],
        [row["gate_shape_mm_fraction_of_peak"] for row in rows],
        0.4,
        label="torch.mm at the gate shape",
    )
    axes.set_xticks(list(positions), [str(row["hidden_size"]) for row in rows])
    axes.set_xlabel("hidden size (batch 32, 64 steps)")
    axes.set_ylabel("fraction of torch.mm peak")
    axes.set_title(
        f"Achieved FLOP/s (peak {payload['peak_flops_per_second'] / 1e9:.0f} "
        f"GFLOP/s, {payload['peak_from']})"
    )
    axes.legend()


FIGURES: dict[str, tuple[Callable, int]] = {  # name: (draw, panels)
    "engine_throughput": (engine_throughput, 1),
    "truncation_cost": (truncation_cost, 1),
    "memory_vs_length": (memory_vs_length, 2),
    "achieved_flops": (achieved_flops, 1),
}


def draw(name: str, path: Path) -> Path:
    """Draw the figure of results ``path`` to the same name with ``.png``."""
    payload = json.loads(path.read_text())
    if name == "memory_vs_length":  # separate runs, e.g. memory_vs_length_100k_cpu.json
        device = path.stem.rsplit("_", 1)[1]
        for extra in sorted(path.parent.glob(f"{name}_*_{device}.json")):
            payload["results"] += json.loads(extra.read_text())["results"]
    function, panels = FIGURES[name]
    figure, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 4.8), squeeze=False)
    function(payload, tuple(axes[0]) if panels > 1 else axes[0][0])
    figure.text(0.01, 0.01, machine_line(payload), fontsize=7, color="gray")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    out = path.with_suffix(".png")
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="whose results: cpu or cuda")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON folder")
    args = parser.parse_args(argv)
    for name in FIGURES:
        path = args.results / f"{name}_{args.device}.json"
        if path.exists():
            print(f"wrote {draw(name, path)}")
        else:
            print(f"no {path.name}; run benchmarks/{name}.py --device {args.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
