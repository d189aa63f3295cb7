"""Resident memory while streaming a large token file through the stream layout.

The acceptance criterion: memory-mapped streaming of a 2 GB token file keeps the
process under 300 MB resident. The benchmark writes a raw ``uint16`` token file of
``--size-gb`` gigabytes (10^9 bytes) in chunks, so writing it takes constant memory,
opens it with ``tbptt.data.open_tokens``, lays it out with
``Streams.language_model(tokens, batch_size=64, steps=256)`` and serves every batch
of one epoch (every token of the file is read). Every ``--sample-every`` batches it
reads this process's resident memory from ``/proc/self/status``:

    VmRSS    resident set: RssAnon + RssFile + RssShmem
    RssAnon  anonymous pages (the Python heap, tensors, NumPy arrays)
    RssFile  file-backed pages mapped by this process (shared libraries, the token map)
    VmHWM    the kernel's high-water mark of VmRSS, reset after the file is written
             (``/proc/self/clear_refs``): the true peak of streaming, not sampled

The criterion is judged on VmHWM, which includes what importing torch costs.

Pages of a file mapping that have been read count in RssFile until they are unmapped;
the kernel does not take them back without memory pressure, so gathering batches by
indexing the map grows the RSS with the part of the file read so far. ``Streams``
reads a memory map's runs with ``os.pread`` instead (``tbptt.data.tokens.read_runs``),
which leaves only the page cache; ``--through-map`` gathers by indexing the map, to
show the difference. The file was just written, so it is read from the page cache:
tokens/s measures the gather, not the disk.

    python benchmarks/memmap_streaming.py                # 2 GB, ~1 min on a 2-core CPU
    python benchmarks/memmap_streaming.py --quick        # 200 MB smoke run
    python benchmarks/memmap_streaming.py --through-map  # index the map instead
    python benchmarks/memmap_streaming.py --size-gb 4 --keep
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import machine, reset_peak_resident, resident_memory, write_json

import tbptt.data.streams
from tbptt.data import Streams
from tbptt.data.tokens import open_tokens

LIMIT_BYTES = 300 * 10**6
"""The criterion: peak resident memory under 300 MB (10^6 bytes)."""

CHUNK_TOKENS = 1 << 21  # 4 MiB of uint16 ids per write
VOCABULARY_SIZE = 50_257


def write_token_file(path: Path, size_bytes: int) -> int:
    """Write ``size_bytes // 2`` pseudo-random uint16 ids to ``path``, one chunk at a
    time (the same buffer refilled), and return the number of ids written."""
    total = size_bytes // 2
    rng = np.random.default_rng(0)
    chunk = np.empty(CHUNK_TOKENS, dtype="<u2")
    with open(path, "wb") as file:
        for start in range(0, total, CHUNK_TOKENS):
            part = chunk[: min(CHUNK_TOKENS, total - start)]
            part[:] = rng.integers(0, VOCABULARY_SIZE, size=part.size, dtype=np.uint16)
            file.write(part.data)
    return total


def stream(path: Path, batch_size: int, steps: int, sample_every: int) -> dict:
    """Serve one epoch of ``path`` as batches; peak memory (sampled) and throughput."""
    tokens = open_tokens(path)
    streams = Streams.language_model(tokens, batch_size=batch_size, steps=steps)
    peaks = dict.fromkeys(("VmRSS", "RssAnon", "RssFile"), 0)
    at_peak: dict[str, int] = {}
    served = checksum = 0
    start = time.perf_counter()
    for number, batch in enumerate(streams):
        served += int(batch.mask.sum())
        checksum += int(batch.inputs[-1, 0])  # use the batch, as a consumer would
        if number % sample_every == 0 or number == len(streams) - 1:
            sample = resident_memory()
            if sample["VmRSS"] > peaks["VmRSS"]:
                at_peak = {**sample, "batch": number}
            for name in peaks:
                peaks[name] = max(peaks[name], sample[name])
    seconds = time.perf_counter() - start
    return {
        "tokens": len(tokens),
        "batches": len(streams),
        "tokens_served": served,
        "seconds": seconds,
        "tokens_per_second": served / seconds,
        "peak_bytes": peaks,
        "at_peak_vmrss": at_peak,
        "after": resident_memory(),
        "checksum": checksum,
    }


def mb(value: int) -> str:
    return f"{value / 10**6:8.1f} MB"


def report(result: dict) -> None:
    peaks = result["peak_bytes"]
    print(
        f"served {result['tokens_served']:,} tokens in {result['batches']:,} batches, "
        f"{result['seconds']:.1f} s ({result['tokens_per_second'] / 1e6:.1f} M tokens/s)"
    )
    print(f"  baseline VmRSS {mb(result['baseline']['VmRSS'])} (after imports, before opening)")
    for name in peaks:
        print(
            f"  peak {name:<8} {mb(peaks[name])}  (sampled every {result['sample_every']} batches)"
        )
    print(f"  VmHWM         {mb(result['after']['VmHWM'])}  (kernel high-water mark)")
    print(f"  token map     {mb(result['token_map_peak_bytes'])}  (peak RssFile over baseline)")
    verdict = "yes" if result["under_limit"] else "NO"
    print(f"  under {LIMIT_BYTES / 10**6:.0f} MB: {verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size-gb",
        type=float,
        default=None,
        help="token file size in 10^9 bytes (default 2, quick 0.2)",
    )
    parser.add_argument("--quick", action="store_true", help="a 200 MB smoke run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument(
        "--sample-every",
        type=int,
        default=64,
        help="read /proc/self/status every this many batches",
    )
    parser.add_argument(
        "--through-map",
        action="store_true",
        help="gather batches by indexing the memory map instead of os.pread",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder with the token file"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default: benchmarks/results/memmap_streaming.json)",
    )
    args = parser.parse_args(argv)
    if args.size_gb is None:
        args.size_gb = 0.2 if args.quick else 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("memmap_streaming: needs /proc/self/status (Linux); skipping.")
        return 0
    name = "memmap_streaming_through_map" if args.through_map else "memmap_streaming"
    out = args.out or Path(__file__).parent / "results" / f"{name}.json"
    if args.through_map:
        tbptt.data.streams.file_location = lambda array: None  # take the indexing path
    folder = Path(tempfile.mkdtemp(prefix="tbptt-memmap-", dir="/tmp"))
    try:
        path = folder / "tokens.bin"
        start = time.perf_counter()
        write_token_file(path, int(args.size_gb * 10**9))
        written = time.perf_counter() - start
        print(f"wrote {path} ({path.stat().st_size / 10**9:.2f} GB) in {written:.1f} s")
        peak_reset = reset_peak_resident()  # the peak while writing is not streaming's
        baseline = resident_memory()
        result = stream(path, args.batch_size, args.steps, args.sample_every)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder)
    result.update(
        file_bytes=int(args.size_gb * 10**9) // 2 * 2,
        write_seconds=written,
        baseline=baseline,
        sample_every=args.sample_every,
        token_map_peak_bytes=result["peak_bytes"]["RssFile"] - baseline["RssFile"],
        limit_bytes=LIMIT_BYTES,
        vmhwm_reset_before_streaming=peak_reset,
        under_limit=result["after"]["VmHWM"] < LIMIT_BYTES,
    )
    report(result)
    settings = {
        key: getattr(args, key)
        for key in ("quick", "size_gb", "batch_size", "steps", "sample_every", "through_map")
    }
    payload = {
        "benchmark": "memmap_streaming",
        "machine": machine(torch.device("cpu")),
        "settings": settings,
        "result": result,
    }
    print(f"wrote {write_json(out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
