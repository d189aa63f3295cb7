"""The Lightning integration trains with TBPTT(k1, k2): the same gradients, window by
window, as the tbptt runner, and the validation loss of the trainer."""

from __future__ import annotations

import pytest
import torch

import tbptt
from tbptt.data import Streams
from tbptt.training.trainer import TrainConfig, Trainer

lightning = pytest.importorskip("lightning")
tbptt_lightning = pytest.importorskip("tbptt.training.lightning")


def make_streams(seed: int, pairs: int) -> Streams:
    """Float64 features with resets and padding at random."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(pairs, 3, generator=gen, dtype=torch.float64)
    targets = torch.randn(pairs, 2, generator=gen, dtype=torch.float64)
    starts = torch.rand(pairs, generator=gen) < 0.1
    valid = torch.rand(pairs, generator=gen) < 0.7
    return Streams(inputs, targets, 3, 6, starts=starts, valid=valid)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return tbptt.models.LSTM(5, input_size=3, output_size=2, num_layers=2).double()


class Recording(tbptt_lightning.TBPTTModule):
    """Keeps every window's gradient as the optimizer is about to step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gradients = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_before_optimizer_step(self, optimizer):
        self.gradients.append([p.grad.clone() for p in self.model.parameters()])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning's advice on workers, loggers
@pytest.mark.filterwarnings("ignore::FutureWarning")  # Lightning's use of torch's pytree API
def test_lightning_trains_with_the_gradients_of_the_tbptt_runner():
    train, validation = make_streams(0, 90), make_streams(1, 60)
    module = Recording(make_model(), tbptt.losses.mse, k1=2, k2=4)
    trainer = lightning.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        precision="64-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    dataloader = tbptt_lightning.dataloader
    trainer.fit(module, dataloader(train), dataloader(validation))

    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    runner, expected = tbptt.Runner(model, tbptt.losses.mse, 2, 4), []
    for batch in train.batches(0):
        for window in runner.windows(
            batch.inputs, batch.targets, resets=batch.resets, mask=batch.mask
        ):
            optimizer.zero_grad()
            window.loss.backward()
            expected.append([p.grad.clone() for p in model.parameters()])
            optimizer.step()
    assert len(module.gradients) == len(expected) == 15  # 5 batches of 3 windows
    for got, want in zip(module.gradients, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(module.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    reference = Trainer(model, tbptt.losses.mse, train, TrainConfig(k1=2)).evaluate(validation)
    logged = float(trainer.callback_metrics["val_loss"])  # Lightning keeps it in float32
    assert logged == pytest.approx(reference["loss"], rel=1e-6)

    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    resumed = Recording(make_model(), tbptt.losses.mse, k1=2, k2=4)
    resumed.on_load_checkpoint(checkpoint)
    for got, want in zip(resumed.runner.state, runner.state, strict=True):  # LSTM: (h, c)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(
        resumed.runner.state_dict()["history"][0], runner.state_dict()["history"][0]
    )  # the k2 - k1 steps
