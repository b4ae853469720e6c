"""A cut's aggregate rows and their JSONL body (``Deltas.rows``/``Deltas.jsonl``): the body is
one ``orjson.dumps`` of the rows split at the row boundaries, so it must equal the per-row
encoding byte for byte whatever the strings hold -- including the boundary's own bytes."""

from __future__ import annotations

import gzip

import orjson
import pytest
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


# strings orjson writes unescaped (no quote, backslash or control character), non-ASCII included
# (a lone surrogate is no UTF-8: orjson refuses it, the last test)
plain = st.characters(blacklist_characters='"\\', blacklist_categories=("Cs",), min_codepoint=0x20)
plain_texts = st.text(alphabet=plain, max_size=12)
plain_assignments = st.dictionaries(
    st.tuples(plain_texts, st.sampled_from(["b", "a", "ab", "é", "", "{}"]) | plain_texts),
    st.tuples(plain_texts, plain_texts, st.integers(0, 2**40)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(plain_assignments)
def test_assignment_lines_joined_from_their_strings_are_the_per_row_encoding(
    assignments: dict[tuple[str, str], tuple[str, str, int]],
) -> None:
    """The joined body (``_assignments_jsonl``) is taken for strings that need no escape and
    is byte for byte the per-row encoding of the contract's rows (computed apart here)."""
    d = Deltas(assignments=assignments)
    expected = b"".join(orjson.dumps(row) + b"\n" for row in expected_rows(d, "experiment_assignments"))
    assert d._assignments_jsonl() == expected
    assert d.jsonl("experiment_assignments") == expected


@given(plain_assignments, st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", 'a"b', "é\\"]), st.integers(0, 3))
def test_a_string_that_needs_escaping_falls_back_to_orjson(
    assignments: dict[tuple[str, str], tuple[str, str, int]], escaped: str, where: int
) -> None:
    (user, experiment), (variant, ts, offset) = next(iter(assignments.items()))
    fields = [user, experiment, variant, ts]
    fields[where] += escaped
    assignments[(fields[0], fields[1])] = (fields[2], fields[3], offset)
    d = Deltas(assignments=assignments)
    assert d._assignments_jsonl() is None
    expected = b"".join(orjson.dumps(row) + b"\n" for row in expected_rows(d, "experiment_assignments"))
    assert d.jsonl("experiment_assignments") == expected


def test_a_lone_surrogate_is_refused_as_orjson_refuses_it() -> None:
    d = Deltas(assignments={("u", "x"): ("v", "t", 0), ("w", "x"): ("v", "\ud800", 1)})
    with pytest.raises(orjson.JSONEncodeError):
        d.jsonl("experiment_assignments")
