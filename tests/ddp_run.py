"""A data-parallel training run for the distributed tests, launched by torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.ddp_run OUT

Every rank trains its share of the same streams three times: an uninterrupted run of
``WINDOWS`` updates (``OUT/whole``), a run stopped after ``STOP`` updates
(``OUT/resumed``) and a fresh trainer that resumes it from its checkpoint. Rank 0
saves both final models and the first run's last evaluation to ``OUT/final.pt``.
``make_trainer`` without torchrun is the single-process run on the same global batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import tbptt
from tbptt.data import Streams
from tbptt.training import distributed
from tbptt.training.trainer import TrainConfig, Trainer

WINDOWS = 14
"""Updates of a whole run: one epoch of 10 and part of the next."""
STOP = 4
"""Updates after which the interrupted run stops."""
STREAMS = 4
"""The global batch B (rank r of 2 takes streams 2r and 2r + 1)."""


def make_streams(seed: int, pairs: int, steps: int) -> Streams:
    """Float64 features with resets and padding at random, so each rank's windows hold
    different numbers of valid elements."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(pairs, 3, generator=gen, dtype=torch.float64)
    targets = torch.randn(pairs, 2, generator=gen, dtype=torch.float64)
    starts = torch.rand(pairs, generator=gen) < 0.1
    valid = torch.rand(pairs, generator=gen) < 0.7
    return Streams(
        inputs, targets, STREAMS, steps, starts=starts, valid=valid, random_offset=True, seed=seed
    )


def make_trainer(run_dir: Path | None, max_windows: int = WINDOWS) -> Trainer:
    """The same run every time, on this process's share of the streams."""
    train, validation = make_streams(0, 122, 6), make_streams(1, 40, 7)
    torch.manual_seed(0)
    model = tbptt.models.GRU(6, input_size=3, output_size=2, num_layers=2).double()
    config = TrainConfig(
        k1=3, k2=5, epochs=2, max_windows=max_windows, lr=1e-2, clip_norm=0.5, log_every=1,
        checkpoint_every=2,
    )  # fmt: skip
    return Trainer(
        model,
        tbptt.losses.mse,
        distributed.shard(train),
        config,
        validation=distributed.shard(validation),
        metrics="regression",
        run_dir=run_dir,
    )


def main(out: Path) -> None:
    with distributed.launched():
        whole = make_trainer(out / "whole")
        metrics = whole.fit()
        make_trainer(out / "resumed", max_windows=STOP).fit()
        resumed = make_trainer(out / "resumed")
        resumed.resume(out / "resumed" / "checkpoints" / "latest.pt")
        resumed.fit()
        if distributed.is_main():
            final = {
                "whole": whole.model.state_dict(),
                "resumed": resumed.model.state_dict(),
                "loss": metrics["loss"],
                "world_size": distributed.get_world_size(),
            }
            torch.save(final, out / "final.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
