"""one_of: every choice error names the choices, and the nearest for a near miss."""

from __future__ import annotations

import pytest

from tbptt.errors import TBPTTError, one_of


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
