"""What strict JSON costs per event, in µs, on the bench's 100-event batch (in process).

The reference decoder (stdlib ``json`` with hooks), the fast path as a whole, orjson's parse
alone, and each check the fast path adds to keep the reference's strictness
(shared/strictjson.py says what each one guards). Best of 7 repeats: the least disturbed
by the other work on the machine. ``python -m bench.ingest_json`` prints them.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

import orjson

from eventpipe import strictjson
from eventpipe.strictjson import LONG_INT_DIGITS, MAX_NUMBER_CHARS

BATCH = 100


def _per_event_us(work: Callable[[], object], body_events: int, number: int = 50) -> float:
    return min(timeit.repeat(work, number=number, repeat=7)) / number / body_events * 1e6


def json_costs() -> dict[str, float]:
    from bench.ingest import sample_events  # the same events as the HTTP figures

    body = orjson.dumps({"batch": sample_events(BATCH)})
    value = strictjson.loads(body)
    strictjson._fast_loads(body, 32)  # raises if this body would not take the fast path
    long_int, long_number = b"0" * LONG_INT_DIGITS, b"0" * (MAX_NUMBER_CHARS + 1)
    checks: dict[str, Callable[[], object]] = {
        "reference": lambda: strictjson.strict_loads(body),
        "fast_path": lambda: strictjson.loads(body),
        "orjson_parse": lambda: orjson.loads(body),
        "check_long_ints": lambda: long_int in body.translate(strictjson._DIGITS),
        "check_long_numbers": lambda: long_number in body.translate(strictjson._NUMBER_CHARS),
        "check_duplicate_keys": lambda: body.count(b":") == orjson.dumps(value).count(b":"),
        "check_depth": lambda: strictjson._containers_within(value, 32),
    }
    return {f"json_{name}_us_per_event": _per_event_us(work, BATCH) for name, work in checks.items()}


if __name__ == "__main__":
    for name, value in json_costs().items():
        print(f"{name:45} {value:8.2f}")
