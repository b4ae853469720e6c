"""One regex pass over many short texts (pure): joined by newlines and matched as a run, where
a Python call per text would cost more than the match (the stream's fetched runs, the
nightly's object lines; issue 16)."""

from __future__ import annotations

import re
from collections.abc import Sequence


def run_of(one: str) -> re.Pattern[str]:
    """A pattern that matches ``one``'s texts joined by newlines (``one`` without anchors)."""
    return re.compile(rf"(?:{one}\n)*{one}")


def each_fullmatches(run: re.Pattern[str], texts: Sequence[str]) -> bool | None:
    """Whether every text fully matches the pattern ``run`` was made from (``run_of``), or
    None when that cannot be told in one pass: no texts, or a text holding a newline."""
    if not texts:
        return None
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:
        return None
    return run.fullmatch(joined) is not None
