"""The columnar fold (``columns.decode_run`` + ``columnar.fold_slice``, what the pipeline runs
per fetch) against the row path (``parse_event`` + ``extract`` + ``fold_many``), both driven
through the real ``PartitionBatch``.

Hypothesis generates a partition's Kafka values (in-order events of a few users meeting a few
experiments, SDK retries hours later, events named "*", aliases, identifies, empty user keys
and, sometimes, invalid records of every kind the row path rejects), splits them into fetches, cuts closing
inside a fetch (slices of one decoded run), commits (sealing), and a seek back that fetches
unsealed offsets again. Both paths must leave the same deltas per cut, the same duplicates,
the same rejected records and the same state; a fetch with an invalid record must go to the
row path whole, and every other fetch must take the columnar path (so the test cannot pass by
always falling back).
"""

from __future__ import annotations

from datetime import UTC, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.stream import columns
from eventpipe.stream.batch import BadRecord, PartitionBatch, decode_run, parse_event
from eventpipe.stream.columnar import first_seen, group
from eventpipe.stream.columns import UNFOLDABLE, checked_stamps
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.fold import Deltas, PartitionState
from eventpipe.stream.live import Live
from eventpipe.stream.marks import Marks
from eventpipe.stream.records import TIMESTAMP
from eventpipe.timeutil import format_ts
from tests.support.clock import ManualClock
from tests.unit.test_stream_fold import START, commit, restored, small_levels
from tests.unit.test_stream_fold_batch import absolute

USERS = [("anon-1", "user-1"), ("anon-2", "user-2"), ("anon-3", "user-1")]
# Records the row path rejects (each for a different reason), or cannot fold.
INVALID: list[bytes | None] = [
    None,
    b"not json",
    b"[1, 2]",
    b'{"type": "track", "event": "x", "anonymousId": "a", "timestamp": "2026-11-25T10:00:00Z"}',
    b'{"type": "page", "messageId": "", "anonymousId": "a", "timestamp": "2026-11-25T10:00:00Z",'
    b' "receivedAt": "2026-11-25T10:00:00Z"}',
    b'{"type": "page", "messageId": "b1", "anonymousId": "a", "timestamp": "yesterday",'
    b' "receivedAt": "2026-11-25T10:00:00Z"}',
    b'{"type": "page", "messageId": "b2", "userId": 7, "timestamp": "2026-11-25T10:00:00Z",'
    b' "receivedAt": "2026-11-25T10:00:00Z"}',
    b'{"type": "track", "event": 5, "messageId": "b3", "anonymousId": "a",'
    b' "timestamp": "2026-11-25T10:00:00Z", "receivedAt": "2026-11-25T10:00:00Z"}',
    b'{"type": "page", "messageId": "b4", "anonymousId": "a", "timestamp": "2026-13-45T10:00:00Z",'
    b' "receivedAt": "2026-11-25T10:00:00Z"}',
    b'{"type": "track", "event": "Experiment Viewed", "messageId": "b5", "anonymousId": "a",'
    b' "properties": [1], "timestamp": "2026-11-25T10:00:00Z", "receivedAt": "2026-11-25T10:00:00Z"}',
]


@st.composite
def event(draw: Any, n: int, ts: str, received: str) -> dict[str, Any]:
    """A partition's event: few users and experiments (so users meet several of them),
    exposures with ids, names or one id missing, events named "*", aliases, identifies,
    empty user keys."""
    anon, uid = draw(st.sampled_from(USERS))
    kind = draw(st.sampled_from(["track"] * 5 + ["page", "screen", "identify", "alias"]))
    e: dict[str, Any] = {"type": kind, "messageId": f"m{n}", "timestamp": ts, "receivedAt": received}
    e |= draw(st.sampled_from([{"anonymousId": anon}, {"anonymousId": anon, "userId": uid}, {"userId": ""}]))
    if kind == "track":
        e["event"] = draw(st.sampled_from(["Experiment Viewed", "Experiment Viewed", "Buy", "*"]))
        x, v = draw(st.sampled_from(["exp-a", "exp-b"])), draw(st.sampled_from(["control", "v1"]))
        e["properties"] = draw(
            st.sampled_from(
                [
                    {"experiment_id": x, "variation_id": v},
                    {"experiment_name": x, "variation_name": v},
                    {"experiment_id": x},
                ]
            )
        )
    elif kind == "alias":
        e["previousId"] = "anon-9"
    return e


# Forms of one instant that TIMESTAMP accepts: the collector's (the fast byte check) and
# others only the regex accepts (and that order differently as texts), so a run may mix them.
FORMS = [
    format_ts,
    lambda t: format_ts(t)[:19] + "Z",
    lambda t: format_ts(t)[:23] + "456+00:00",
    lambda t: format_ts(t)[:19],
]
MOSTLY_CANONICAL = st.sampled_from(FORMS[:1] * 6 + FORMS[1:])


@st.composite
def values(draw: Any) -> list[bytes | None]:
    """One partition's Kafka values in order: events, SDK retries of earlier ones (same
    messageId, later receivedAt, possibly hours later), and sometimes invalid records."""
    clock = START
    sent: list[dict[str, Any]] = []
    out: list[bytes | None] = []
    for n in range(draw(st.integers(1, 70))):
        clock += timedelta(minutes=draw(st.integers(1, 150)))
        ts = draw(MOSTLY_CANONICAL)(clock)
        if sent and draw(st.integers(0, 6)) == 0:
            out.append(orjson.dumps({**draw(st.sampled_from(sent)), "receivedAt": ts}))
        else:
            # sometimes a timestamp hours behind (a late event): counted before its user's exposure
            late = clock - timedelta(minutes=draw(st.sampled_from([0, 0, 0, 0, 0, 90, 400])))
            sent.append(draw(event(n, draw(MOSTLY_CANONICAL)(late), ts)))
            out.append(orjson.dumps(sent[-1]))
        if draw(st.integers(0, 24)) == 0:
            out.append(draw(st.sampled_from(INVALID)))
    return out


def drive(
    records: list[bytes | None], fetches: set[int], cuts: set[int], back: int, columnar: bool
) -> tuple[list[Any], PartitionBatch, list[bool], list[Any], int]:
    """Feed ``records`` (offsets 0..n-1) to a ``PartitionBatch`` in fetches split at
    ``fetches``; at each offset in ``cuts`` the open cut is folded (inside a fetch, too),
    its changelog records written, committed and sealed; then the last cut is written but not
    committed, a seek back to ``back`` (not before the last commit) fetches the rest again and
    it is written again. What each cut emitted, the batch, which fetches went columnar, the
    changelog records and the offset a restore would resume from."""
    batch = PartitionBatch(0, CutPolicy(10**9, 10**12, 10, ManualClock()))
    log: list[Any] = []
    emitted: list[Any] = []
    paths: list[bool] = []
    first = 0

    def close(at: int, committed: bool = True) -> None:
        nonlocal first
        batch.fold()
        emitted.append((batch.deltas, batch.duplicates, batch.rejected))
        if committed:
            commit(batch.state, first, at - 1, log)
            first = at
        elif at > first:  # the writer writes a cut's records before it commits
            records = batch.state.cut_records(first, at - 1)
            batch.state.written(records)
            log.extend(records)
        batch.deltas, batch.duplicates, batch.rejected = Deltas(), 0, []

    def fetch(start: int, end: int) -> None:
        values = records[start:end]
        run = decode_run(batch.state, values) if columnar else None
        paths.append(run is not None)
        for i, value in enumerate(values):
            offset = start + i
            if offset in cuts and offset > first:
                close(offset)
            event = run.events[i] if run is not None else _parsed(value)
            if event is None:
                batch.add_rejected(offset, value, "bad", "")
            else:
                batch.add_event(offset, value or b"", event, run, i)
        batch.fold()

    n = len(records)
    bounds = sorted({0, n, *(b for b in fetches if 0 < b < n)})
    for start, end in pairwise(bounds):
        fetch(start, end)
    close(n, committed=False)  # written, never committed: a seek back re-reads it
    fetch(max(back, first), n)  # offsets the state already holds, unsealed
    close(n, committed=False)
    return emitted, batch, paths, log, first


def content(state: PartitionState) -> tuple[Any, ...]:
    """Everything the state holds. Not the order of its dicts: the columnar fold adds a run's
    new marks grouped by row kind, the row path event by event, so the first tag a compact set
    meets at a seal (the base its 2-byte tags are relative to) and the order of entries in a
    cut record can differ; the entries and their absolute tags are the same."""
    return (
        state.live_ids,
        state.live_members,
        *(sorted([*m.pending.items(), *absolute(m)]) for m in (state.ids, state.members)),
        len(state.ids.pending),
        len(state.members.pending),
        state.assigned,
        state.changed,
        state.exposed_on,
        state.n_assigned,
        state.high_received,
    )


def _parsed(value: bytes | None) -> dict[str, Any] | None:
    try:
        return parse_event(value)
    except BadRecord:
        return None


def _rejects(records: list[bytes | None], start: int, end: int) -> bool:
    """Whether the row path rejects a record of ``start..end`` (as ``drive`` fetches them)."""
    state = PartitionState()
    for value in records[start:end]:
        event = _parsed(value)
        if event is None:
            return True
        try:
            state.extract(event)
        except UNFOLDABLE:
            return True
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values(), st.sets(st.integers(0, 90)), st.sets(st.integers(0, 90)), st.integers(0, 90),
    st.sampled_from([1, 3, 7, columns.CHUNK]),
)  # fmt: skip
def test_the_columnar_fold_equals_the_row_path(
    records: list[bytes | None], fetches: set[int], cuts: set[int], back: int, chunk: int
) -> None:
    saved, columns.CHUNK = columns.CHUNK, chunk  # a fetch decoded in several chunks
    try:
        with small_levels():  # sealed entries in both levels of the hashed sets
            rows, row_batch, _, row_log, start = drive(records, fetches, cuts, back, columnar=False)
            cols, col_batch, paths, col_log, _ = drive(records, fetches, cuts, back, columnar=True)
            col_restored, row_restored = restored(col_log, start), restored(row_log, start)
    finally:
        columns.CHUNK = saved
    assert cols == rows  # every cut's deltas, duplicates and rejected records
    assert content(col_batch.state) == content(row_batch.state)
    # persisted and restored (a new owner): the same state, from the same cut records
    assert [r for r in col_log if r[0][0] == "c"] == [r for r in row_log if r[0][0] == "c"]
    assert content(col_restored) == content(row_restored)
    n = len(records)
    bounds = sorted({0, n, *(b for b in fetches if 0 < b < n)})
    spans = list(pairwise(bounds))
    assert paths[: len(spans)] == [not _rejects(records, s, e) for s, e in spans]


def test_a_run_with_one_invalid_record_goes_to_the_row_path_whole() -> None:
    ts = "2026-11-25T10:00:00.000Z"
    good = orjson.dumps(
        {"type": "page", "messageId": "m", "anonymousId": "a", "timestamp": ts, "receivedAt": ts}
    )
    batch = PartitionBatch(0, CutPolicy(10, 10**6, 10, ManualClock()))
    assert decode_run(batch.state, [good, good]) is not None
    for bad in INVALID:
        assert decode_run(batch.state, [good, bad, good]) is None


def test_a_value_nested_deeper_than_msgspec_reads_goes_to_the_row_path() -> None:
    """msgspec gives up at Python's recursion limit (1,000 levels), orjson at 1,024: a value in
    between is no crash of the worker (a poison record) but the row path's, which accepts it."""
    ts = "2026-11-25T10:00:00.000Z"
    head = b'{"type":"page","messageId":"m","anonymousId":"a","timestamp":"%s","receivedAt":"%s"' % (
        ts.encode(),
        ts.encode(),
    )
    deep = head + b',"z":' + b"[" * 1010 + b"]" * 1010 + b"}"
    batch = PartitionBatch(0, CutPolicy(10, 10**6, 10, ManualClock()))
    assert decode_run(batch.state, [head + b"}", deep]) is None
    assert parse_event(deep)["messageId"] == "m"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(format_ts, st.datetimes(timezones=st.just(UTC))),
            st.text(alphabet="0123456789-T:.Z+\n٣ ", min_size=0, max_size=26),
            st.sampled_from(
                ["2026-11-25T10:00:00.000Z\n", "2026-11-25T10:00:00Z", "2026-11-25 10:00:00.000Z"]
            ),
        ),
        max_size=6,
    )
)
def test_the_run_timestamp_check_equals_the_pattern_text_by_text(texts: list[str]) -> None:
    valid, keys = checked_stamps(texts)
    assert valid == all(TIMESTAMP.match(t) for t in texts)
    assert keys is None or valid  # integer keys only for texts the pattern accepts


def test_an_assignment_is_one_key_and_one_value_object_shared_by_the_state_and_the_deltas() -> None:
    """Per new assignment the fold makes one (user, experiment) key and one value tuple and no
    copies of them for the deltas: each tuple made is walked by a young GC pass (docs/stream.md
    "Garbage collector"). Both paths, a new assignment and a re-fold of its offset."""
    ts = "2026-11-25T10:00:00.000Z"
    exposure = {"type": "track", "event": "Experiment Viewed", "timestamp": ts, "receivedAt": ts}
    values: list[bytes | None] = [
        orjson.dumps(
            exposure
            | {
                "messageId": f"m{n}",
                "anonymousId": user,
                "properties": {"experiment_id": x, "variation_id": "v1"},
            }
        )
        for n, (user, x) in enumerate([("a", "exp-a"), ("a", "exp-b"), ("b", "exp-a")])
    ]
    for columnar in (True, False):
        batch = PartitionBatch(0, CutPolicy(10**9, 10**12, 10, ManualClock()))
        for again in (False, True):  # the second time: offsets the state already holds
            run = decode_run(batch.state, values) if columnar else None
            assert (run is not None) is columnar
            for offset, value in enumerate(values):
                event = run.events[offset] if run is not None else _parsed(value)
                assert event is not None
                batch.add_event(offset, value or b"", event, run, offset)
            batch.fold()
            state, deltas = batch.state, batch.deltas.assignments
            assert len(deltas) == 3, (columnar, again)
            changed = {pair: pair for pair in state.changed}
            for pair, value in deltas.items():
                user, experiment = pair
                assert value is state.assigned[user][experiment]
                assert again or pair is changed[pair]  # a re-fold makes its key anew
            batch.deltas = Deltas()


@st.composite
def code_columns(draw: st.DrawFn) -> list[tuple[np.ndarray[Any, Any], int]]:
    """Code columns of one set of rows, each with its number of codes: small (grouped by
    counting), large (sorted) or beyond one int64 key (combined pairwise). Codes below 2**31,
    as the fold's (its tables hold a run's distinct texts), from a few values at both ends of
    each range, so rows share groups."""
    rows = draw(st.integers(0, 40))
    sizes = draw(st.lists(st.sampled_from([1, 2, 3, 7, 1_000, 100_000, 1 << 31]), min_size=1, max_size=5))
    columns = []
    for n in sizes:
        values = sorted({0, 1, 2, n // 2, n - 2, n - 1} & set(range(n)) if n < 10 else {0, 1, n // 2, n - 1})
        codes = draw(st.lists(st.sampled_from(values), min_size=rows, max_size=rows))
        columns.append((np.asarray(codes, dtype=np.int64), n))
    return columns


@settings(max_examples=300, deadline=None)
@given(code_columns())
def test_group_codes_rows_by_their_code_tuples_in_tuple_order(
    columns: list[tuple[np.ndarray[Any, Any], int]],
) -> None:
    """``columnar.group`` against the rows' code tuples: the group of a row is the rank of its
    tuple among the distinct tuples (in tuple order, which the rows of a cut's deltas follow),
    and the row it names for each group holds that group's tuple. Every path of it: counting
    (a small key range), sorting and the pairwise combination."""
    tuples = list(zip(*(column.tolist() for column, _ in columns), strict=True))
    distinct = sorted(set(tuples))
    inverse, first = group(columns)
    assert inverse.tolist() == [distinct.index(t) for t in tuples]
    assert [tuples[i] for i in first.tolist()] == distinct


KEY_POOL = [np.uint64((k * 0x9E3779B97F4A7C15) % (1 << 64)) for k in range(1, 13)]  # spread over the top bits


@settings(max_examples=400, deadline=None)
@given(st.data(), st.booleans(), st.booleans())
def test_first_seen_counts_a_key_at_its_lowest_offset_by_the_row_rules(
    data: st.DataObject, distinct: bool, retag: bool
) -> None:
    """``first_seen`` against the rules written out key by key (fold.py's module docstring):
    runs of distinct keys (its shortcut, most messageId runs) and runs with repeated keys,
    over live entries created before, at or after the run's offsets and sealed keys. A tag is
    its offset's (the marks of one event share their day tag)."""
    pool = data.draw(st.lists(st.sampled_from(KEY_POOL), min_size=1, max_size=8, unique=True))
    live_at = data.draw(st.dictionaries(st.sampled_from(pool), st.integers(0, 20)))
    sealed_keys = [k for k in pool if k not in live_at and data.draw(st.booleans())]
    keys = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=12, unique=distinct))
    offsets = data.draw(st.lists(st.integers(0, 20), min_size=len(keys), max_size=len(keys)))
    live = Live()
    for k, o in live_at.items():
        live[int(k)] = (o, 1000 + o)
    sealed = Marks()
    if sealed_keys:
        sealed.add_many(np.asarray(sealed_keys, dtype=np.uint64), np.full(len(sealed_keys), 20_000, np.int64))
    expected_live = {int(k): (o, 1000 + o) for k, o in live_at.items()}
    counted: dict[int, bool] = {}
    lowest = {int(k): min(o for kk, o in zip(keys, offsets, strict=True) if kk == k) for k in keys}
    for k, low in lowest.items():
        entry = expected_live.get(k)
        if entry is None:
            counted[k] = k not in {int(s) for s in sealed_keys}
            if counted[k]:
                expected_live[k] = (low, 10 * low)
        else:
            counted[k] = entry[0] >= low
            if entry[0] > low:  # created by a later offset: this one creates it
                expected_live[k] = (low, 10 * low if retag else entry[1])
    expected = [counted[int(k)] and o == lowest[int(k)] for k, o in zip(keys, offsets, strict=True)]
    flags = first_seen(
        live, sealed, np.asarray(keys, dtype=np.uint64), np.asarray(offsets, dtype=np.int64),
        np.asarray(offsets, dtype=np.int64) * 10, retag=retag,
    )  # fmt: skip
    assert flags.tolist() == expected
    assert dict(live.items()) == expected_live
