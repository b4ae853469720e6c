"""schemathesis hooks (``SCHEMATHESIS_HOOKS``): the hostile strategies of tests/support/hostile.py
inside the bodies schemathesis generates from the collector's OpenAPI spec.

Every ``date-time`` field draws calendar edges (years 1 and 9999 with any offset, leap days and
seconds), and ids, event names and body write keys draw text with lone surrogates. Each
hostile body sent is counted in the file named by ``EVENTPIPE_HOSTILE_LOG``, so the test can
check that the strategies really reached the server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # loaded by path from the CLI

from tests.support.hostile import calendar_edge_time, hostile_text

schemathesis.openapi.format("date-time", calendar_edge_time)

_SPOILED = ("userId", "anonymousId", "event", "writeKey")


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _spoil(body: dict[str, Any], field: str, text: str, where: int) -> dict[str, Any]:
    spoiled = dict(body)
    batch = spoiled.get("batch")
    if isinstance(batch, list) and batch and field != "writeKey":
        items = list(batch)
        index = where % len(items)
        if isinstance(items[index], dict):
            items[index] = {**items[index], field: text}
        spoiled["batch"] = items
    else:
        spoiled[field] = text
    log = os.environ.get("EVENTPIPE_HOSTILE_LOG")
    if log and _has_surrogate(spoiled):
        with open(log, "a") as out:
            out.write("1\n")
    return spoiled


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy:
    if not isinstance(body, dict):
        return st.just(body)
    spoiled = st.builds(_spoil, st.just(body), st.sampled_from(_SPOILED), hostile_text, st.integers(0, 99))
    return st.one_of(st.just(body), spoiled)
