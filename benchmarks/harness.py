"""A small harness shared by the benchmarks: the machine, interleaved timing, memory,
command-line options and JSON out.

Timing is interleaved: every repeat runs each variant once, the order reversed on
every other repeat (A B C C B A A B C ...), so slow drifts of the machine (another
process, a virtual CPU taken away by the host, frequency changes) hit every variant
alike. The figure reported is the median over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

import tbptt
from tbptt.devices import machine

RESULTS = Path(__file__).parent / "results"
"""Where every benchmark writes its JSON (and ``plot.py`` its figures)."""


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer read after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""``wall``: elapsed time. ``cpu``: this process's CPU time; with one thread, the time
the work held a core, which other processes taking turns on a busy machine do not
lengthen (they still share its caches and memory bandwidth). CPU only."""


def interleaved(
    variants: dict[str, Callable[[], None]],
    repeats: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, ``repeats`` times, variants interleaved.

    Each callable runs one timed block (for example a fixed number of training
    windows). Warm-up is the caller's business. Element ``i`` of every list comes
    from repeat ``i``, so ratios can be paired repeat by repeat.
    """
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for repeat in range(repeats):
        for name, run in order if repeat % 2 == 0 else reversed(order):
            synchronize(device)
            start = clock()
            run()
            synchronize(device)
            seconds[name].append(clock() - start)
    return seconds


def steal_seconds() -> float | None:
    """CPU time the hypervisor has taken from this virtual machine since boot (the
    ``steal`` column of ``/proc/stat``), summed over CPUs; ``None`` if unknown."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def median(values: list[float]) -> float:
    """The median, the figure every benchmark reports (robust to a few slow repeats)."""
    return statistics.median(values)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile: the spread over repeats."""
    if len(values) < 2:
        return (values[0],) * 3
    low, middle, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, middle, high


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the system has none): how
    busy the shared machine was around a measurement."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def add_common_arguments(parser: argparse.ArgumentParser, quick: str) -> None:
    """The options every benchmark takes: ``--quick``, ``--device``, ``--out``, ``--seed``."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (prints a note and exits 0 without a GPU)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default: benchmarks/results/<name>_<device>.json)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="what a time is: wall (elapsed) or cpu (process CPU time; "
        "with --threads 1 on a shared machine)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's; 1 is faster on a "
        "machine that others keep busy)",
    )


def pick_device(name: str, benchmark: str) -> torch.device | None:
    """``torch.device(name)``, or ``None`` after a note when CUDA is asked for and absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"{benchmark}: CUDA is not available here; skipping the cuda run.")
        return None
    return device


def results_path(out: Path | None, benchmark: str, device: torch.device) -> Path:
    """``out``, or ``benchmarks/results/<benchmark>_<device type>.json``."""
    return out or RESULTS / f"{benchmark}_{device.type}.json"


class Recording:
    """What surrounds a measurement: load averages and CPU steal before and after, the
    wall time; :meth:`write` stores them with the machine, settings and results."""

    def __init__(self, benchmark: str, device: torch.device, settings: dict) -> None:
        self.benchmark, self.device, self.settings = benchmark, device, settings
        self.load_before, self.steal_before = load_average(), steal_seconds()
        self.start = time.perf_counter()
        described = machine(device)
        gpu = f" ({described['gpu']})" if "gpu" in described else ""
        print(
            f"{benchmark}: {described['cpu']} ({described['cpu_count']} cores), torch "
            f"{described['torch']}, {described['torch_num_threads']} threads, device "
            f"{device}{gpu}, load average {self.load_before}"
        )

    def write(self, path: Path, **content: object) -> Path:
        """Write the JSON payload to ``path`` and say where."""
        elapsed, steal = time.perf_counter() - self.start, steal_seconds()
        stolen = None if steal is None or self.steal_before is None else steal - self.steal_before
        payload = {
            "benchmark": self.benchmark,
            "machine": machine(self.device),
            "settings": self.settings,
            "load_average": {"before": self.load_before, "after": load_average()},
            "wall_seconds": elapsed,
            "cpu_steal_fraction": None if stolen is None else stolen / elapsed,
            **content,
        }
        written = write_json(path, payload)
        print(f"wrote {written}")
        return written


def start(
    benchmark: str, args: argparse.Namespace, keys: tuple[str, ...], **extra: object
) -> tuple[torch.device, Recording] | None:
    """The device of ``args.device`` and a :class:`Recording` whose settings are the
    ``keys`` of ``args`` and ``extra``; ``None`` (after a note) when CUDA is absent."""
    device = pick_device(args.device, benchmark)
    if device is None:
        return None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and args.clock == "cpu":
        print(f"{benchmark}: --clock cpu does not see GPU time; timing wall time instead.")
        args.clock = "wall"
    settings = {**{key: getattr(args, key) for key in (*keys, "clock")}, **extra}
    return device, Recording(benchmark, device, settings)


# --------------------------------------------------------------------------- training


def token_network(
    cell: str,
    hidden_size: int,
    vocab_size: int,
    device: torch.device,
    seed: int,
    num_layers: int = 1,
) -> tbptt.models.RecurrentNetwork:
    """A freshly initialised built-in network on token ids (embedding = hidden size)."""
    torch.manual_seed(seed)
    return tbptt.models.RecurrentNetwork(
        cell, hidden_size, vocab_size=vocab_size, num_layers=num_layers
    ).to(device)


def random_tokens(
    steps: int, batch_size: int, vocab_size: int, device: torch.device, seed: int
) -> tuple[Tensor, Tensor]:
    """Random ``inputs`` and ``targets``, each ``(steps, batch_size)`` token ids."""
    generator = torch.Generator().manual_seed(seed)
    shape = (steps, batch_size)
    inputs = torch.randint(vocab_size, shape, generator=generator)
    targets = torch.randint(vocab_size, shape, generator=generator)
    return inputs.to(device), targets.to(device)


def train_chunk(
    runner: tbptt.Runner,
    inputs: Tensor,
    targets: Tensor,
    optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """Every window of one chunk: backward, then the optimizer's step if one is given
    (without one the gradients accumulate). Returns the number of windows."""
    count = 0
    for window in runner.windows(inputs, targets):
        window.loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad()
        count += 1
    return count


# --------------------------------------------------------------------------- memory

RESIDENT_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def resident_memory() -> dict[str, int]:
    """This process's resident memory in bytes, from ``/proc/self/status`` (Linux):
    ``VmRSS`` (resident now), its parts and ``VmHWM`` (the kernel's high-water mark)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in RESIDENT_FIELDS:
                values[name] = int(rest.split()[0]) * 1024  # the kernel writes kB
    return values


def reset_peak_resident() -> bool:
    """Reset VmHWM to the current VmRSS (Linux 4.0+), so it measures what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


CHILD_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
"""glibc serves every allocation of 64 KiB or more with its own mapping and unmaps it
when freed (a fixed threshold also turns off glibc's raising of it after frees), so
resident memory follows the live tensors instead of what the heap keeps for reuse."""


def run_child(script: Path, arguments: list[str]) -> dict:
    """Run ``python script *arguments`` in a fresh process (its own peak memory, under
    :data:`CHILD_ENVIRONMENT`) and return the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **CHILD_ENVIRONMENT},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(arguments)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
