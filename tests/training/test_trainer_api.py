"""What a user brings to the Trainer: their own optimizer (with parameter groups) and
scheduler, any iterable of batches as data; and to the Runner, a Batch whole."""

from __future__ import annotations

import pytest
import torch

import tbptt
from tbptt import TBPTTError
from tbptt.data import Streams
from tbptt.training.trainer import TrainConfig, Trainer

PLAIN = {"k1": 4, "k2": 6, "epochs": 2, "clip_norm": None, "blowup": None, "log_every": 5}


def streams() -> Streams:
    tokens = torch.randint(0, 7, (401,), generator=torch.Generator().manual_seed(0))
    return Streams.language_model(tokens, 2, 4)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return tbptt.models.GRU(8, vocab_size=7)


def trained(data, optimizer=None, scheduler=None, net=None, **settings) -> Trainer:
    config = TrainConfig(**{**PLAIN, **settings})
    net = model() if net is None else net
    trainer = Trainer(
        net, tbptt.losses.cross_entropy, data, config, optimizer=optimizer, scheduler=scheduler
    )
    trainer.fit()
    return trainer


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_an_optimizer_of_your_own_is_the_one_stepped():
    by_name = trained(streams(), optimizer="sgd", lr=0.1)
    assert by_name.config.optimizer == "sgd"
    net = model()
    own = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = trained(streams(), optimizer=own, net=net)
    assert trainer.optimizer is own
    assert_same_weights(trainer.model, by_name.model)


def test_parameter_groups_keep_their_own_learning_rates():
    net = model()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    frozen = [p for name, p in net.named_parameters() if name.startswith("head")]
    rest = [p for name, p in net.named_parameters() if not name.startswith("head")]
    assert frozen and rest
    groups = [{"params": rest}, {"params": frozen, "lr": 0.0}]
    trained(streams(), optimizer=torch.optim.SGD(groups, lr=0.1), net=net)
    for name, p in net.named_parameters():
        assert torch.equal(p, before[name]) == name.startswith("head"), name


def test_a_scheduler_of_your_own_steps_once_per_update():
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.5**t)
    trainer = trained(streams(), optimizer, scheduler, net=net, max_windows=3, epochs=1)
    assert trainer.progress.updates == 3
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda net: {"optimizer": torch.optim.SGD([torch.zeros(1, requires_grad=True)])},
            "not the model's parameters",
        ),
        (
            lambda net: {
                "scheduler": torch.optim.lr_scheduler.LambdaLR(
                    torch.optim.SGD(net.parameters(), lr=0.1), lambda t: 1.0
                )
            },
            "steps another optimizer",
        ),
        (lambda net: {"optimizer": "lbfgs"}, "optimizer must be one of"),
    ],
)
def test_an_optimizer_or_scheduler_that_does_not_fit_is_refused(make, message):
    net = model()
    with pytest.raises(TBPTTError, match=message):
        Trainer(net, tbptt.losses.cross_entropy, streams(), TrainConfig(), **make(net))


def test_a_scheduler_and_a_schedule_are_not_both_taken():
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    config = TrainConfig(schedule="cosine")
    with pytest.raises(TBPTTError, match="leave schedule constant"):
        Trainer(
            net,
            tbptt.losses.cross_entropy,
            streams(),
            config,
            optimizer=optimizer,
            scheduler=scheduler,
        )


def test_any_iterable_of_batches_trains_as_the_streams_do():
    from_streams = trained(streams())
    as_list = trained(list(streams().batches(0)))
    assert as_list.progress.updates == from_streams.progress.updates
    assert_same_weights(as_list.model, from_streams.model)


def test_the_cosine_schedule_needs_a_length_the_data_does_not_give():
    with pytest.raises(TBPTTError, match="set max_windows"):
        trained(list(streams().batches(0)), schedule="cosine")
    assert (
        trained(list(streams().batches(0)), schedule="cosine", max_windows=5).progress.updates == 5
    )


def test_a_runner_takes_a_batch_whole():
    batch = next(streams().batches(0))
    whole = tbptt.Runner(model(), tbptt.losses.cross_entropy, 2, 3).windows(batch)
    fields = tbptt.Runner(model(), tbptt.losses.cross_entropy, 2, 3).windows(
        batch.inputs, batch.targets, resets=batch.resets, mask=batch.mask
    )
    for a, b in zip(whole, fields, strict=True):
        assert torch.equal(a.loss, b.loss)
    with pytest.raises(TBPTTError, match="takes the batch alone"):
        next(tbptt.Runner(model(), tbptt.losses.cross_entropy, 2).windows(batch, batch.targets))
