"""How torch's thread count plays on a busy machine: ``tbptt demo`` and a short
``tbptt train`` with torch's default threads against ``--threads 1``, each while
CPU hogs (one per core) keep every core busy, as other work on a shared machine does.

Each command runs in a fresh process; its wall time and CPU time (user + system of
the child, from ``resource.getrusage``) are recorded, the variants interleaved
(A B B A ...) so drifts of the machine hit both.

    python benchmarks/threads_busy.py            # the recorded figures
    python benchmarks/threads_busy.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import RESULTS, Recording, median


def torch_default_threads() -> int:
    """The threads torch starts with in a fresh process left to its defaults."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    command = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    return int(subprocess.run(command, env=environment, capture_output=True, text=True).stdout)


def timed(command: list[str]) -> dict[str, float]:
    """Wall and CPU seconds of ``command`` run to its end in a fresh process."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=environment, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": wall, "cpu_seconds": cpu}


def commands(quick: bool, folder: Path) -> dict[str, list[str]]:
    """The two workloads: the demo (small) and a short training run on a task."""
    tbptt = [sys.executable, "-m", "tbptt"]
    demo = ["demo", "--delay", "4", "--epochs", "1" if quick else "2", "--sequences", "64"]
    train = ["train", "--task", "copy", "--length", "10", "--hidden-size", "64"]
    train += ["--num-layers", "1", "--k1", "16", "--max-windows", "20" if quick else "100"]
    return {
        "demo": [*tbptt, *demo, "--out", str(folder / "demo")],
        "train": [*tbptt, *train, "--quiet", "--overwrite", "--run-dir", str(folder / "run")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of smaller runs")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--hogs", type=int, default=os.cpu_count(), help="busy loops alongside")
    parser.add_argument("--out", type=Path, default=RESULTS / "threads_busy_cpu.json")
    args = parser.parse_args()
    default = torch_default_threads()
    repeats = 1 if args.quick else args.repeats
    recording = Recording("threads_busy", torch.device("cpu"), {**vars(args), "out": None})
    hog = [sys.executable, "-c", "while True: pass"]
    hogs = [subprocess.Popen(hog) for _ in range(args.hogs)]
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, command in commands(args.quick, Path(folder)).items():
                variants = {f"threads {default} (torch's default)": default, "threads 1": 1}
                runs: dict[str, list[dict[str, float]]] = {label: [] for label in variants}
                order = list(variants.items())
                for repeat in range(repeats):
                    for label, threads in order if repeat % 2 == 0 else reversed(order):
                        runs[label].append(timed([*command, "--threads", str(threads)]))
                        print(name, label, runs[label][-1], flush=True)
                results[name] = runs
    finally:
        for process in hogs:
            process.kill()
            process.wait()
    summary = {
        name: {
            label: {key: median([run[key] for run in r]) for key in r[0]}
            for label, r in runs.items()
        }
        for name, runs in results.items()
    }
    print(summary)
    recording.write(args.out, torch_default_threads=default, runs=results, medians=summary)


if __name__ == "__main__":
    main()
