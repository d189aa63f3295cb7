"""NT-ASGD: averaging starts when the validation loss is worse than the best before
the last ``nonmono`` evaluations, and the average is the mean of every later iterate."""

from __future__ import annotations

import pytest
import torch

from tbptt import TBPTTError
from tbptt.training import TrainConfig, checkpoints
from tbptt.training.averaging import IterateAverage
from tests.resumable_run import make_trainer


def test_averaging_starts_at_the_first_loss_worse_than_the_best_before_the_last_nonmono():
    average = IterateAverage(nonmono=2)
    # 3.5 is compared with min(5, 4); 2.9 with min(5, 4, 3); 3.2 with min(5, 4, 3, 3.5)
    started = [average.observe(loss) for loss in (5.0, 4.0, 3.0, 3.5, 2.9, 3.2, 9.0)]
    assert started == [False, False, False, False, False, True, False]  # once


def test_the_average_is_the_mean_of_the_parameters_after_each_update_since_the_start():
    model = torch.nn.Linear(2, 1).double()
    average = IterateAverage(nonmono=1)
    average.update(model)  # not started: nothing kept
    assert average.observe(1.0) is False and average.observe(2.0) is False
    assert average.observe(3.0) is True  # worse than 1.0, the best before the last one
    iterates = [torch.randn(1, 2, dtype=torch.float64) for _ in range(4)]
    for value in iterates:
        with torch.no_grad():
            model.weight.copy_(value)
        average.update(model)
    torch.testing.assert_close(average.average["weight"], torch.stack(iterates).mean(0))
    with average.swapped_in(model):
        torch.testing.assert_close(model.weight.detach(), torch.stack(iterates).mean(0))
    assert torch.equal(model.weight.detach(), iterates[-1])  # its own weights again


def test_an_ntasgd_run_evaluates_and_saves_the_average_as_its_best(tmp_path):
    trainer = make_trainer(tmp_path, optimizer="ntasgd", nonmono=1, eval_every=2, lr=0.5)
    trainer.fit()
    assert trainer.averaging.started and trainer.averaging.count > 0
    best = checkpoints.load(tmp_path / "checkpoints" / "best.pt")
    assert best["averaging"]["started"]  # the best evaluation came after the start
    for name, value in best["averaging"]["average"].items():
        assert torch.equal(best["model"][name], value), name  # what was evaluated
    trainer.model.load_state_dict(best["model"])
    assert trainer.evaluate(trainer.validation)["loss"] == pytest.approx(
        trainer.progress.best, rel=1e-12
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"optimizer": "ntasgd", "nonmono": 0}, "nonmono must be >= 1")],
)
def test_impossible_ntasgd_settings_are_refused(settings, message):
    with pytest.raises(TBPTTError, match=message):
        TrainConfig(**settings)
