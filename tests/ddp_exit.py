"""A process of the distributed tests, launched by torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.ddp_exit OUT

Joins the process group with ``distributed.launched``, builds an optimizer inside it
as a trainer does (which imports ``torch._dynamo``), all-reduces once and leaves; then
writes the names of this process's threads still running to ``OUT/threads-RANK.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from tbptt.training import distributed


def thread_names() -> list[str]:
    names = []
    for thread in Path("/proc/self/task").iterdir():
        try:
            names.append((thread / "comm").read_text().strip())
        except OSError:  # it ended meanwhile
            pass
    return names


def main(out: Path) -> None:
    with distributed.launched():
        torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])
        assert distributed.sum_values({"one": 1.0}) == {"one": 2.0}
    deadline = time.monotonic() + 10  # a joined thread can linger in /proc a moment
    while any("gloo" in name for name in thread_names()) and time.monotonic() < deadline:
        time.sleep(0.05)
    (out / f"threads-{os.environ['RANK']}.json").write_text(json.dumps(thread_names()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
