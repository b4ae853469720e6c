"""One regex pass over joined texts answers what a match per text would."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from eventpipe.textruns import each_fullmatches, run_of

ONE = r"[0-9]{2}:[a-c]+"
EACH = re.compile(ONE)
texts = st.lists(st.one_of(st.from_regex(EACH, fullmatch=True), st.text(alphabet="0123:abcx\n")), max_size=6)


@given(texts)
def test_one_pass_agrees_with_a_fullmatch_per_text(values: list[str]) -> None:
    answer = each_fullmatches(run_of(ONE), values)
    if not values or any("\n" in value for value in values):
        assert answer is None  # a newline inside a value would shift the run's segments
    else:
        assert answer == all(EACH.fullmatch(value) for value in values)


def test_a_newline_inside_a_value_is_not_taken_for_a_separator() -> None:
    # joined, ["12:a\n34:b"] reads as two good texts: the check must refuse to answer
    assert each_fullmatches(run_of(ONE), ["12:a\n34:b"]) is None
    assert each_fullmatches(run_of(ONE), ["12:a", "34:b"]) is True
    assert each_fullmatches(run_of(ONE), ["12:a", "34:d"]) is False
