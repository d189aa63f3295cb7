"""A small training run for the resume tests, importable and runnable as a script:

    python -m tests.resumable_run RUN_DIR [--resume]

prints ``window N`` after each update (so a test can kill it at a chosen update)
and, when done, saves the final parameters to RUN_DIR/final.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import tbptt
from tbptt.data import Streams
from tbptt.training.trainer import TrainConfig, Trainer

WINDOWS = 40


def make_trainer(run_dir: Path | None, **overrides: object) -> Trainer:
    """The same run every time: fixed data, weights and config (dropout on, so the
    random generator's state matters for an exact resume)."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 12, (2401,), generator=gen)
    starts = torch.rand(2400, generator=gen) < 0.01
    train = Streams(tokens[:-1], tokens[1:], 4, 3, starts=starts, random_offset=True, seed=1)
    validation = Streams.language_model(tokens[:400], 2, 6)
    torch.manual_seed(0)
    model = tbptt.models.GRU(16, vocab_size=12, num_layers=2, dropout=0.2)
    settings = dict(
        k1=3,
        k2=5,
        epochs=3,
        max_windows=WINDOWS,
        log_every=1,
        eval_every=7,
        checkpoint_every=3,
        schedule="cosine",
    )
    config = TrainConfig(**{**settings, **overrides})  # type: ignore[arg-type]
    return Trainer(
        model, tbptt.losses.cross_entropy, train, config, validation=validation, run_dir=run_dir
    )


def main(run_dir: str, resume: bool) -> None:
    def announce(record: dict) -> None:
        if record["kind"] == "train":
            print(f"window {record['window']}", flush=True)

    torch.set_num_threads(1)  # tiny shapes; and the same reductions as the test's run
    trainer = make_trainer(Path(run_dir))
    trainer.log.callbacks.append(announce)
    if resume:
        trainer.resume(Path(run_dir) / "checkpoints" / "latest.pt")
    trainer.fit()
    torch.save(trainer.model.state_dict(), Path(run_dir) / "final.pt")


if __name__ == "__main__":
    main(sys.argv[1], "--resume" in sys.argv[2:])
