"""Messages: what a user gave is quoted cut to a readable length; every choice error
names the choices, and the nearest for a near miss."""

from __future__ import annotations

import pytest

from tbptt.errors import QUOTE_LENGTH, TBPTTError, check_non_negative, one_of, quoted


def test_a_short_value_is_quoted_as_repr_writes_it():
    assert quoted("fast") == "'fast'"
    assert quoted(3) == "3"
    assert quoted(None) == "None"


def test_a_long_string_keeps_its_ends_and_says_how_long_it_was():
    text = quoted("a" * 10 + "x" * 200_000_000 + "z")
    assert len(text) < 2 * QUOTE_LENGTH
    assert text.startswith("'aaaaaaaaaa") and "z'" in text
    assert text.endswith("(200,000,011 characters)")


def test_a_long_or_deep_container_is_cut_to_its_first_items():
    assert len(quoted(list(range(10**6)))) < 50
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert len(quoted(deep)) < 20


def test_a_choice_error_names_every_choice_and_the_nearest_in_one_line():
    with pytest.raises(TBPTTError) as error:
        one_of("schedule", "cosin", ("constant", "cosine", "plateau"))
    assert str(error.value) == (
        "schedule 'cosin' is unknown: schedule must be one of constant, cosine, plateau "
        "(did you mean 'cosine'?)"
    )
    with pytest.raises(TBPTTError, match=r"must be one of a, b$"):
        one_of("x", "zzz", ("a", "b"))
    one_of("x", "a", ("a", "b"))  # a choice passes


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan")])
def test_a_negative_infinite_or_nan_weight_is_refused_naming_it(value):
    with pytest.raises(TBPTTError, match=r"^temporal_penalty must be finite and >= 0, got "):
        check_non_negative("temporal_penalty", value)
    check_non_negative("temporal_penalty", 0.0)  # zero passes
