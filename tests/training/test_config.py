"""Configs refuse values of the wrong type when they are made, in one line."""

from __future__ import annotations

import re

import pytest

from tbptt.cli.runconfig import DataConfig, EvalConfig, ModelConfig
from tbptt.errors import TBPTTError
from tbptt.training import TrainConfig


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 1.5}, "epochs must be an integer, got 1.5 (float)"),
        ({"lr": "0.1"}, "lr must be a number, got '0.1' (str)"),
        ({"k1": "64"}, "k1 must be an integer or unset, got '64' (str)"),
        ({"compile": 1}, "compile must be true or false, got 1 (int)"),
        ({"seed": True}, "seed must be an integer, got True (bool)"),
        ({"optimizer": ["adam"]}, "optimizer must be a string, got ['adam'] (list)"),
    ],
)
def test_a_train_config_field_of_the_wrong_type_is_refused(values, message):
    with pytest.raises(TBPTTError, match=re.escape(message)):
        TrainConfig(**values)


def test_numbers_may_be_integers_and_optional_fields_unset():
    config = TrainConfig(lr=1, clip_norm=None, k1=None, blowup=None)
    assert config.lr == 1 and config.k1 is None


def test_the_command_lines_configs_check_their_types_too():
    with pytest.raises(TBPTTError, match="hidden_size must be an integer, got '8'"):
        ModelConfig(hidden_size="8")  # type: ignore[arg-type]
    with pytest.raises(TBPTTError, match="inputs must be a list of strings or unset"):
        DataConfig(csv="a.csv", inputs="price")  # type: ignore[arg-type]
    with pytest.raises(TBPTTError, match="batch_size must be an integer or unset"):
        EvalConfig(batch_size=2.0)  # type: ignore[arg-type]
