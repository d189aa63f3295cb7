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


def test_a_checkpoint_as_tbptt_writes_it_passes():
    check_saved("run.pt", GOOD)
    check_saved("run.pt", edited(vocabulary=None, sizes={"input_size": 2, "output_size": 1}))
    check_saved("run.pt", edited(normalizer={"mean": [0.5], "std": [1]}))


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
        ({**GOOD, "position": {"epoch": 0, "batch": -1, "window": 0}}, "position.batch: is -1"),
        ({**GOOD, "position": "start"}, "position: is 'start', not a table"),
    ],
)
def test_an_edited_field_is_refused_naming_the_checkpoint_and_the_field(state, fragment):
    with pytest.raises(TBPTTError) as caught:
        check_saved("run.pt", state)
    assert str(caught.value).startswith("run.pt: ")
    assert fragment in str(caught.value)
