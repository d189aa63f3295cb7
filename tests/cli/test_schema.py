"""A checkpoint's ``extra`` and position are checked against their schema on load."""

from __future__ import annotations

import pytest

from tbptt.cli.schema import check_saved
from tbptt.errors import TBPTTError

GOOD = {
    "extra": {
        "config": {},
        "sizes": {"vocab_size": 5},
        "vocabulary": {"level": "char", "tokens": ["<unk>", "a", "b", "c", "d"]},
        "normalizer": None,
        "columns": None,
    },
    "position": {"epoch": 0, "batch": 2, "window": 2},
}


def edited(**extra: object) -> dict:
    return {**GOOD, "extra": {**GOOD["extra"], **extra}}


TRANSFORMS = {
    "input_columns": ["a", "b"],
    "target_columns": ["a", "b"],
    "calendar": [],
    "inputs": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
    "targets": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
    "scale_targets": True,
    "input_changes": True,
    "base": "linear_ar",
    "horizon": 1,
    "season": None,
    "ar": {"lags": 2, "horizon": 1, "coefficients": [[0.0, 0.0]] * 5},  # 1 + 2 lags x 2
}
"""A CSV run's transforms: two input and two target columns, one step ahead."""


def forecast(**transforms: object) -> dict:
    """A CSV run's state, its transforms edited."""
    saved = {"transforms": {**TRANSFORMS, **transforms}, "splits": {}, "bounds": {}}
    sizes = {"input_size": 2, "output_size": 2}
    return edited(vocabulary=None, sizes=sizes, forecast=saved)


def test_a_checkpoint_as_tbptt_writes_it_passes():
    check_saved("run.pt", GOOD)
    check_saved("run.pt", edited(vocabulary=None, sizes={"input_size": 2, "output_size": 1}))
    check_saved("run.pt", edited(normalizer={"mean": [0.5], "std": [1]}))
    check_saved("run.pt", forecast())
    check_saved("run.pt", forecast(season=24, base="last"))


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        (edited(sizes={"vocab_size": True}), "extra.sizes.vocab_size: is True"),
        (edited(sizes={"vocab_size": 0}), "extra.sizes.vocab_size: is 0, not an integer >= 1"),
        (edited(sizes={"width": 3}), "extra.sizes.width: is not one of vocab_size"),
        (edited(sizes=[5]), "extra.sizes: is [5], not a table"),
        (edited(vocabulary={"level": "byte", "tokens": []}), "extra.vocabulary.level"),
        (edited(vocabulary={"level": "char", "tokens": ["a"]}), "first token must be '<unk>'"),
        (edited(normalizer={"mean": ["0"], "std": [1.0]}), "extra.normalizer.mean: is ['0']"),
        (edited(normalizer={"mean": [0.0]}), "extra.normalizer: is {'mean': [0.0]}"),
        (edited(columns={"inputs": [1], "targets": ["a"]}), "extra.columns.inputs"),
        (edited(forecast="x"), "extra.forecast: is 'x', not a table"),
        (forecast(horizon=0), "extra.forecast.transforms.horizon: is 0, not an integer >= 1"),
        (forecast(horizon="1"), "extra.forecast.transforms.horizon: is '1'"),
        (forecast(horizon=2), "transforms: do not fit 2 target columns, a horizon of 2"),
        (forecast(input_columns=5), "transforms.input_columns: is 5, not a list of names"),
        (forecast(targets={"mean": ["0"], "std": [1.0]}), "forecast.transforms.targets.mean"),
        (forecast(inputs={"mean": [0.0], "std": [1.0]}), "transforms.inputs: does not fit"),
        (forecast(scale_targets="yes"), "transforms.scale_targets: is 'yes', not true or false"),
        (forecast(base="mean"), "transforms.base: is 'mean', not one of none, last"),
        (forecast(season=0), "transforms.season: is 0, not an integer >= 1 or none"),
        (forecast(ar={"lags": 2, "horizon": 1, "coefficients": [[0.0]]}), "transforms.ar: is not"),
        (edited(forecast={"transforms": "x"}), "extra.forecast.transforms: is 'x', not a table"),
        ({**GOOD, "position": {"epoch": 0, "batch": -1, "window": 0}}, "position.batch: is -1"),
        ({**GOOD, "position": "start"}, "position: is 'start', not a table"),
    ],
)
def test_an_edited_field_is_refused_naming_the_checkpoint_and_the_field(state, fragment):
    with pytest.raises(TBPTTError) as caught:
        check_saved("run.pt", state)
    assert str(caught.value).startswith("run.pt: ")
    assert fragment in str(caught.value)
