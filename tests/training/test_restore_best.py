"""Trainer.fit(restore_best=True) ends with the weights of the best evaluation."""

import torch

import tbptt
from tbptt.data import Streams
from tbptt.training.trainer import TrainConfig, Trainer


def fitted(restore_best: bool) -> tuple[Trainer, Streams, list[float], dict[str, float]]:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(400, 1, generator=generator)
    train = Streams(values[:-1], values[1:], 2, 10)
    validation = Streams(values[:-1], values[1:], 1, 50, allow_short=True)
    torch.manual_seed(0)
    model = tbptt.models.LSTM(8, input_size=1, output_size=1)
    config = TrainConfig(k1=10, epochs=1, lr=0.2, eval_every=3, restore_best=restore_best)
    losses: list[float] = []
    record = lambda r: losses.append(r["loss"]) if r["kind"] == "eval" else None  # noqa: E731
    trainer = Trainer(
        model,
        tbptt.losses.mse,
        train,
        config,
        validation=validation,
        metrics="regression",
        callbacks=[record],
    )
    return trainer, validation, losses, trainer.fit()


def test_the_restored_model_scores_the_best_validation_loss():
    trainer, validation, losses, result = fitted(restore_best=True)
    assert len(losses) > 3 and min(losses) < losses[-1]  # the last evaluation was not the best
    assert trainer.evaluate(validation)["loss"] == min(losses)
    assert result["loss"] == min(losses)


def test_without_restore_best_the_last_weights_stay():
    trainer, validation, losses, result = fitted(restore_best=False)
    assert trainer.evaluate(validation)["loss"] == losses[-1] == result["loss"]
