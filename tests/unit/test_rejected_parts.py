"""The dead-letter lifecycle's pure parts: the archiver's cuts (named by offsets, a replay
ends where the recorded object ended), reading the archive's lines, and the replay plan."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import orjson

from eventpipe.rejected import Query, parse_line
from eventpipe.replay import plan
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.deadletters import LetterCut, letter_line
from tests.support.clock import ManualClock

RECEIVED = datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC)


def letter(offset: int, received: datetime = RECEIVED, reason: str = "missing_user") -> dict:
    value = {"reason": reason, "detail": "d", "source": "dev", "receivedAt": received.isoformat(),
             "index": 0, "message": {"type": "track", "event": "e", "messageId": f"m{offset}"}}  # fmt: skip
    return letter_line(2, offset, orjson.dumps(value), 0)


def cut(clock: ManualClock | None = None) -> LetterCut:
    return LetterCut(2, CutPolicy(10_000, 1 << 20, 5.0, clock or ManualClock()))


def test_objects_are_named_by_first_offset_and_day_and_never_span_a_day():
    c = cut()
    assert c.opening_key(letter(40)) == "rejected/ingest/dt=2026-11-26/ingest+2+0000000000000000040.jsonl.gz"
    c.add(letter(40), 10)
    c.add(letter(41), 10)
    assert c.before(letter(42, RECEIVED + timedelta(seconds=1)), 10) == "hour"  # the next day: cut first
    obj = c.obj()
    assert obj is not None and obj.key.endswith("ingest+2+0000000000000000040.jsonl.gz")
    assert obj.metadata == {"last-offset": "41", "count": "2"}
    assert [orjson.loads(line)["offset"] for line in gzip.decompress(obj.body).splitlines()] == [40, 41]


def test_a_replay_ends_where_the_written_object_ended_whatever_the_clock_says():
    clock = ManualClock()
    first = cut(clock)
    for offset in (40, 41, 42):
        first.add(letter(offset), 10)
    clock.advance(10.0)
    assert first.policy.expired()  # the wall clock cut it at 42 ...
    written = first.obj()

    replay = cut(ManualClock())  # ... a replay reads further before its clock runs out, but is told
    replay.policy.force(42)
    reasons = [replay.add(letter(offset), 10) for offset in (40, 41, 42)]
    assert reasons == [None, None, "replay"]
    assert replay.before(letter(43), 10) == "replay"
    assert replay.obj() == written


def test_a_record_that_is_no_dead_letter_is_kept_and_dated_by_kafka():
    line = letter_line(0, 7, b"not json", int(RECEIVED.timestamp() * 1000))
    assert line["reason"] == "unreadable_dead_letter" and line["raw"] == "not json"
    assert line["receivedAt"].startswith("2026-11-26T23:59:59")


def test_archive_lines_of_both_stages_read_back():
    ingest = parse_line("ingest", letter(40), "k")
    assert (ingest.id, ingest.reason, ingest.source) == ("ingest:2:40", "missing_user", "dev")
    event = {"type": "track", "messageId": "x", "source": "web", "receivedAt": "2026-11-26T10:00:00.000Z"}
    stream = parse_line("stream", {"reason": "unfoldable", "detail": "d", "partition": 1, "offset": 9,
                                   "value": orjson.dumps(event).decode()}, "k")  # fmt: skip
    assert (stream.id, stream.source, stream.message) == ("stream:1:9", "web", event)
    since = Query(since=RECEIVED - timedelta(hours=1))
    assert since.wanted(ingest) and not since.wanted(stream)
    assert not Query(reason="other").wanted(ingest)


def test_replay_plan_fixes_keeps_ids_places_in_time_and_holds_back_the_invalid():
    no_user = parse_line("ingest", letter(40), "k")  # missing_user, messageId m40
    bare = {"reason": "missing_event", "detail": "d", "source": "dev", "receivedAt": RECEIVED.isoformat(),
            "message": {"type": "track", "userId": "u", "timestamp": "2026-11-26T23:00:05Z",
                        "sentAt": "2026-11-26T23:00:10Z"}}  # fmt: skip
    no_event = parse_line("ingest", letter_line(2, 41, orjson.dumps(bare), 0), "k")

    unfixed = plan([no_user, no_event])
    assert unfixed.total == 0 and [i for i, _ in unfixed.invalid] == ["ingest:2:40", "ingest:2:41"]

    def fix(message, rejected):
        if rejected["reason"] == "missing_event":
            return {**message, "event": "Fixed"}
        return None

    fixed = plan([no_user, no_event], fix)
    assert fixed.skipped == {"left out by the fix script": 1}
    [message] = fixed.send["dev"]
    assert message["messageId"] == "rj-ingest-2-41"  # stable: a second replay stores nothing new
    # the client's 5 s delay, against the original receipt (not the replay's)
    assert message["timestamp"] == "2026-11-26T23:59:54.000Z"
    assert "event" not in no_event.message  # the fix worked on a copy


def test_hostile_event_data_is_listed_as_text():
    from rich.console import Console

    from eventpipe.rejected_cli import _clean

    console = Console(record=True, width=200)
    console.print(_clean("[/bold][link=http://x]Order\x1b[31m"))
    assert console.export_text().strip() == "[/bold][link=http://x]Order\ufffd[31m"
