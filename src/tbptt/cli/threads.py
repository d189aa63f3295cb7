"""How many CPU threads torch uses: ``--threads N`` (``threads`` in a config file),
applied before a command does any work.

torch starts as many threads as the machine has cores. On a machine that other work
keeps busy, every parallel region then waits for its slowest thread, which the
kernel has descheduled: ``tbptt demo`` took 7.6 times as long as with one
thread (``benchmarks/threads_busy.py``, figures in benchmarks/README.md), while
more threads gain at most 1.7 times on an idle 2-core machine. Hence one thread by
default.
"""

from __future__ import annotations

import os
from contextlib import suppress

from tbptt.errors import TBPTTError

THREADS_HELP = (
    "CPU threads for torch (default: 1, which is fastest for small models and on a "
    "shared machine; raise it, up to the cores this process may use, for a large "
    "model on an idle machine)"
)


def default_threads() -> int:
    """The threads a command uses without ``--threads``."""
    return 1


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op and inter-op threads to ``threads`` (None: the default);
    return the count."""
    import torch  # here, not at the top: ``tbptt --help`` must not import torch

    count = default_threads() if threads is None else threads
    check_threads(count)
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        # torch allows this only before its first parallel work; a second command in
        # one process (as in the tests) keeps the first one's inter-op threads
        with suppress(RuntimeError):
            torch.set_num_interop_threads(count)
    return count


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the system has one
    (``taskset``, a container's cpuset), else all the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(threads: int) -> None:
    """Refuse more threads than the CPUs this process may use: they only slow torch
    down, and a count of millions makes OpenMP abort the process when its first parallel
    work starts, not a command's input check."""
    cpus = usable_cpus()
    if threads > cpus:
        raise TBPTTError(
            f"threads {threads:,} is more than the {cpus} CPU{'s' * (cpus != 1)} this "
            f"process may use (the machine's, less any affinity limit); give at most {cpus}"
        )
