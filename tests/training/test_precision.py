"""Mixed precision and torch.compile as trainer options: bf16 and fp16 train, an fp16
overflow skips its update and lowers the scale, compiled training matches eager."""

from __future__ import annotations

import pytest
import torch

import tbptt
from tbptt import TBPTTError
from tbptt.data import Streams
from tbptt.training.trainer import TrainConfig, Trainer


def cycle_trainer(cell: str, run_dir=None, **settings) -> Trainer:
    """A language model on a cycle of 7 tokens: perfectly predictable."""
    train = Streams.language_model(torch.arange(3000) % 7, 4, 8)
    torch.manual_seed(0)
    model = tbptt.models.RecurrentNetwork(cell, 16, vocab_size=7)
    config = TrainConfig(**{"k1": 8, "lr": 1e-2, "log_every": 10, **settings})
    return Trainer(model, tbptt.losses.cross_entropy, train, config, run_dir=run_dir)


def test_bf16_training_converges_with_float32_parameters():
    trainer = cycle_trainer("lstm", precision="bf16", max_windows=60)
    before = trainer.evaluate(trainer.train_streams)["loss"]
    trainer.fit()
    after = trainer.evaluate(trainer.train_streams)["loss"]
    assert after < 0.1 * before and trainer.progress.skipped == 0
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_bf16_runs_the_forward_pass_in_bfloat16_and_backward_outside_autocast():
    trainer = cycle_trainer("gru", precision="bf16")
    batch = next(trainer.train_streams.batches(0))
    windows = trainer.runner.windows(batch.inputs, batch.targets)
    for window in trainer.precision.forward(windows):
        assert window.outputs.dtype == torch.bfloat16
        assert not torch.is_autocast_enabled("cpu")


def test_fp16_trains_with_a_scale_kept_in_checkpoints(tmp_path):
    trainer = cycle_trainer("gru", tmp_path, precision="fp16", max_windows=40)
    before = trainer.evaluate(trainer.train_streams)["loss"]
    trainer.fit()
    assert trainer.evaluate(trainer.train_streams)["loss"] < 0.2 * before
    resumed = cycle_trainer("gru", precision="fp16", max_windows=40)
    resumed.resume(tmp_path / "checkpoints" / "latest.pt")
    assert resumed.precision.scaler.get_scale() == trainer.precision.scaler.get_scale() > 1


def test_an_fp16_overflow_skips_the_update_and_lowers_the_scale():
    trainer = cycle_trainer("gru", precision="fp16", max_windows=1)
    trainer.precision.scaler = torch.amp.GradScaler("cpu", init_scale=1e38)  # overflows
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train_batch(next(trainer.train_streams.batches(0)))
    assert trainer.progress.skipped == 1 and trainer.progress.updates == 0
    assert trainer.precision.scaler.get_scale() < 1e38
    for name, p in trainer.model.named_parameters():
        assert torch.equal(p, before[name]), name


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_training_makes_the_updates_of_eager_training():
    eager, compiled = cycle_trainer("gru"), cycle_trainer("gru", compile=True)
    batch = next(eager.train_streams.batches(0))
    for trainer in (eager, compiled):
        trainer.train_batch(batch)
        trainer.train_batch(batch)
    for (name, a), b in zip(
        eager.model.named_parameters(), compiled.model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_an_unknown_precision_is_refused():
    with pytest.raises(TBPTTError, match="precision must be one of 32, bf16, fp16"):
        TrainConfig(precision="fp8")
