"""The reprocess reads what the warehouse could load: its line check (one definition with the
loader's), the EMR inputs without quarantined objects, the mapper's refusal, the CLI flag."""

from __future__ import annotations

import gzip
import re
from datetime import datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventpipe.cli import build_parser
from eventpipe.loader.batches import CorruptBatch, parse_batch
from eventpipe.loader.reprocess.inputs import QUARANTINED, s3_inputs
from eventpipe.loader.reprocess.job import ReprocessJob
from eventpipe.loader.reprocess.lines import (
    REQUIRED,
    TIMESTAMPS,
    _is_timestamp,
    all_loadable,
    event_lines,
    line_problem,
    record_problem,
)
from eventpipe.loader.reprocess.packed import read_packed
from eventpipe.settings import Settings
from eventpipe.timeutil import parse_ts

GOOD = {"type": "track", "event": "Buy", "messageId": "m1", "userId": "u1", "anonymousId": None,
        "timestamp": "2026-11-26T09:00:00.000Z", "receivedAt": "2026-11-26T09:00:00.100Z",
        "sentAt": None, "source": "dev", "properties": {}}  # fmt: skip


def line(**changes: object) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def reason_of(body: bytes) -> str | None:
    try:
        event_lines("raw/events/dt=2026-11-26/hr=09/x.jsonl.gz", body)
    except CorruptBatch as exc:
        return exc.reason
    return None


def test_the_required_fields_are_the_loaders_not_null_columns():
    assert set(REQUIRED) == {"messageId", "type", "source", "timestamp", "receivedAt"}
    assert set(TIMESTAMPS) == {"timestamp", "receivedAt", "sentAt", "originalTimestamp"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [  # the fault suite's corrupt objects (tests/faults/test_outages.py) and more
        (b"this is not gzip", "bad_gzip"),
        (gzip.compress(b"{not json\n"), "bad_json"),
        (gzip.compress(b'{"type":"track"}\n'), "bad_shape"),
        (gzip.compress(line() + b"\n" + line(messageId=None)), "bad_shape"),
        (gzip.compress(line() + b"\n[1, 2]\n"), "bad_shape"),
        (gzip.compress(line(timestamp="yesterday")), "bad_value"),
        (gzip.compress(line(sentAt=12)), "bad_value"),
        (gzip.compress(line(properties={"a": "x\u0000y"})), "bad_json"),
        (gzip.compress(line() + b"\x01"), "bad_json"),
        (gzip.compress(line())[:-8], "bad_gzip"),  # truncated
        (gzip.compress(line() + b"\n") + gzip.compress(line(messageId="m2")), None),  # 2 members
        (gzip.compress(line(properties={"path": "C:\\u0000"})), None),  # an escaped backslash
        (gzip.compress(b"\n" + line() + b"\r\n\n" + line(messageId="m2") + b"\n"), None),
        (gzip.compress(b""), None),
    ],
)
def test_an_object_is_refused_for_the_loaders_reason(body, reason):
    assert reason_of(body) == reason


def test_lines_are_split_as_the_loader_splits_them():
    body = gzip.compress(b"\n" + line() + b"\r\n   \n" + line(messageId="m2"))
    key = "raw/events/dt=2026-11-26/hr=09/x.jsonl.gz"
    assert event_lines(key, body) == parse_batch(key, "events", body).lines
    assert len(event_lines(key, body)) == 2


def test_every_missing_required_field_is_bad_shape():
    for key in REQUIRED:
        assert line_problem(line(**{key: None}))[0] == "bad_shape", key
        record = {k: v for k, v in GOOD.items() if k != key}
        assert line_problem(orjson.dumps(record))[0] == "bad_shape", key
    assert line_problem(line()) is None


def settings_for_emr() -> Settings:
    return Settings(s3_bucket="b", s3_prefix="p/")


def test_emr_inputs_are_date_globs_without_quarantined_objects():
    at = [(25, "23", 0), (26, "09", 1), (26, "09", 2), (26, "10", 3), (27, "01", 4)]
    keys = [f"p/raw/events/dt=2026-11-{d}/hr={h}/events+0+{n:019}.jsonl.gz" for d, h, n in at]
    objects = [{"Key": k} for k in keys]
    plain = s3_inputs(settings_for_emr(), objects)
    base = "s3://b/p/raw/events"
    assert plain.paths == [f"{base}/dt=2026-11-{d}/hr=*/*.jsonl.gz" for d in (25, 26, 27)]
    assert (plain.objects, plain.skipped) == (5, [])

    inputs = s3_inputs(settings_for_emr(), objects, {keys[1]})
    assert inputs.paths == [
        f"{base}/dt=2026-11-25/hr=*/*.jsonl.gz",
        f"s3://b/{keys[2]}",  # the hour with the quarantined object: its other objects by name
        f"{base}/dt=2026-11-26/hr=10/*.jsonl.gz",
        f"{base}/dt=2026-11-27/hr=*/*.jsonl.gz",
    ]
    assert inputs.objects == 4
    assert [(o.key, o.reason) for o in inputs.skipped] == [(keys[1], QUARANTINED)]
    assert all(keys[1] not in p and "dt=2026-11-26/hr=*" not in p for p in inputs.paths)


def map_all(lines: list[bytes]) -> list:
    """The first mapper's packed lines, read back as the first reducer reads them."""
    job = ReprocessJob(["--day", "2026-11-26"])
    return [read_packed(packed) for raw in lines for _, packed in job.map_by_message(None, raw)]


def test_the_mapper_refuses_a_line_the_loader_would_refuse():
    snapshot = {
        "experiment_id": "x",
        "user_key": "u1",
        "variant": "a",
        "first_exposed_at": "2026-11-01T00:00Z",
    }
    mapped = map_all([line(), b"   ", orjson.dumps(snapshot)])
    assert [k for k, _ in mapped] == ["m1", ["snapshot", "u1"]]
    for bad in (b"{not json", b'{"type":"track"}', line(receivedAt="soon"), b"[1]"):
        with pytest.raises(ValueError, match="corrupt raw line"):
            map_all([bad])


def test_cli_takes_the_quarantine_wait():
    args = build_parser().parse_args(["reprocess", "--date", "2026-11-26", "--quarantine-wait-s", "0"])
    assert args.quarantine_wait_s == 0.0
    assert build_parser().parse_args(["reprocess", "--date", "2026-11-26"]).quarantine_wait_s is None


def _parse_ts_takes(value: object) -> bool:
    try:
        parse_ts(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        return False
    return True


written = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.isoformat(timespec="milliseconds") + "Z"
)


@given(st.one_of(written, written.map(lambda t: t.replace("1", "9", 2)), st.text(max_size=30), st.integers()))
def test_the_timestamp_fast_path_takes_what_parse_ts_takes(value):
    assert _is_timestamp(value) == _parse_ts_takes(value)


stamp = st.one_of(
    st.none(), written, written.map(lambda t: t.replace("1", "9", 2)), st.text(max_size=30), st.integers()
)
records = st.lists(
    st.one_of(
        st.fixed_dictionaries({k: stamp for k in TIMESTAMPS}).map(lambda r: {**GOOD, **r}),
        st.fixed_dictionaries({k: written for k in TIMESTAMPS}).map(lambda r: {**GOOD, **r}),
        st.sampled_from([GOOD, {**GOOD, "source": None}, [1, 2], "text", {"type": "track"}]),
    ),
    max_size=6,
)


@given(records)
def test_the_objects_fast_check_passes_only_what_the_record_check_passes(found):
    """``all_loadable`` is the hot path of ``event_records``: when it says yes, the
    per-record check (the definition) must find nothing; when every value is written as
    every stage writes it and the record check finds nothing, it must say yes too."""
    clean = all(record_problem(r) is None for r in found)
    if all_loadable(found):
        assert clean
    shape = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
    written_form = all(
        isinstance(r, dict) and all(r.get(k) is None or shape.fullmatch(str(r[k])) for k in TIMESTAMPS)
        for r in found
    )
    if clean and written_form:
        assert all_loadable(found)


def test_a_value_with_a_newline_cannot_pass_as_two_timestamps():
    two = "2026-11-26T09:00:00.000Z\n2026-11-26T09:00:00.000Z"
    assert not all_loadable([{**GOOD, "sentAt": two}])
    assert record_problem({**GOOD, "sentAt": two}) == (
        "bad_value",
        f"sentAt is not an ISO 8601 timestamp: {two!r}",
    )


def test_the_first_problem_in_line_order_names_the_object_as_before():
    body = gzip.compress(line() + b"\n" + line(source=None) + b"\n{not json\n")
    with pytest.raises(CorruptBatch) as refused:
        event_lines("raw/events/dt=2026-11-26/hr=09/x.jsonl.gz", body)
    assert (refused.value.reason, refused.value.detail) == ("bad_shape", "line 2: source is missing")
    body = gzip.compress(line() + b"\n{not json\n" + line(source=None) + b"\n")
    with pytest.raises(CorruptBatch) as refused:
        event_lines("raw/events/dt=2026-11-26/hr=09/x.jsonl.gz", body)
    assert refused.value.reason == "bad_json" and refused.value.detail.startswith("line 2: ")
