"""A cut's aggregate rows and their JSONL body (``Deltas.rows``/``Deltas.jsonl``): the body is
one ``orjson.dumps`` of the rows split at the row boundaries, so it must equal the per-row
encoding byte for byte whatever the strings hold -- including the boundary's own bytes."""

from __future__ import annotations

import gzip

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventpipe.s3 import gzip_body, gzip_json_rows
from eventpipe.stream.deltas import TABLES, Deltas

# the bytes the split looks for, and their pieces, inside strings
TRICKY = ['},{"day":', '},{"experiment_id":', '"', "\\", '\\"', "},{", "\n", "é", "\u2028", "{", "}"]
texts = st.one_of(
    st.sampled_from(TRICKY), st.text(max_size=12), st.text(alphabet='{},":\\dayexpriment_', max_size=24)
)
counts = st.lists(st.integers(0, 2**40), min_size=2, max_size=2)
assignment_values = st.tuples(texts, texts, st.integers(0, 2**40))  # (variant, first exposed at, offset)


@st.composite
def deltas(draw: st.DrawFn) -> Deltas:
    return Deltas(
        engagement=draw(st.dictionaries(st.tuples(texts, texts, texts), counts, max_size=6)),
        experiment=draw(st.dictionaries(st.tuples(texts, texts, texts, texts, texts), counts, max_size=6)),
        assignments=draw(st.dictionaries(st.tuples(texts, texts), assignment_values, max_size=12)),
    )


def expected_rows(d: Deltas, table: str) -> list[dict[str, object]]:
    """The rows in the order of their sorted key tuples (docs/contracts.md section 3)."""
    if table == "engagement_daily":
        names = ("day", "event", "received_day")
        return [
            {**dict(zip(names, k, strict=True)), "event_count": n, "user_count": u}
            for k, (n, u) in sorted(d.engagement.items())
        ]
    if table == "experiment_daily":
        names = ("day", "experiment_id", "variant", "event", "received_day")
        return [
            {**dict(zip(names, k, strict=True)), "event_count": n, "user_count": u}
            for k, (n, u) in sorted(d.experiment.items())
        ]
    return [
        {"experiment_id": x, "user_key": k, "variant": v, "first_exposed_at": t}
        for (x, k), (v, t) in sorted(((x, k), (v, t)) for (k, x), (v, t, _) in d.assignments.items())
    ]


@settings(max_examples=500, deadline=None)
@given(deltas())
@example(
    Deltas(
        assignments={
            ('a},{"experiment_id":"b', "x"): ("v", "t", 0),
            ("a", "x"): ('},{"experiment_id":', "t", 1),
        }
    )
)
@example(Deltas(engagement={('},{"day":', '"},{"day":"', "r"): [1, 2], ("d", "e", "r"): [3, 4]}))
def test_jsonl_is_the_per_row_encoding(d: Deltas) -> None:
    for table in TABLES:
        expected = expected_rows(d, table)
        assert d.rows(table) == expected
        assert d.count(table) == len(expected)
        # one line per row, keys in the contract's order: the old per-row encoding
        assert d.jsonl(table) == b"".join(orjson.dumps(row) + b"\n" for row in expected)
        assert gzip_body(d.jsonl(table), 1) == gzip_json_rows(expected, 1)
        assert len(gzip.decompress(gzip_body(d.jsonl(table), 1)).splitlines()) == len(expected)


def test_assignment_rows_sort_by_experiment_then_user() -> None:
    d = Deltas(
        assignments={
            ("u1", "b"): ("v", "t", 0),
            ("u2", "a"): ("v", "t", 1),
            ("u10", "a"): ("w", "s", 2),
            ("u0", "ab"): ("v", "t", 3),
        }
    )
    assert [(r["experiment_id"], r["user_key"]) for r in d.rows("experiment_assignments")] == [
        ("a", "u10"), ("a", "u2"), ("ab", "u0"), ("b", "u1")
    ]  # fmt: skip


def test_a_row_that_is_not_flat_still_makes_one_line_per_row() -> None:
    """No path makes such a row today (every value is a str or an int); if one ever did, the
    split would cut it in two: the body then falls back to one encoding per row."""
    nested = [{"a": 1}, {"experiment_id": 1}]  # the boundary's bytes between two nested objects
    d = Deltas(assignments={("u", "x"): (nested, "t", 0), ("v", "x"): ("w", "t", 1)})  # type: ignore[dict-item]
    rows = d.rows("experiment_assignments")
    assert d.jsonl("experiment_assignments") == b"".join(orjson.dumps(row) + b"\n" for row in rows)
    assert len(d.jsonl("experiment_assignments").splitlines()) == 2
