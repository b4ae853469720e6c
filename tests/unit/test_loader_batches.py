"""The pure parts of the loader: key parsing, batch checks, dedup, discovery windows."""

from __future__ import annotations

import gzip
from datetime import date

import orjson
import pytest

from eventpipe.loader.batches import CorruptBatch, batch_from_rows, parse_batch, table_of_key
from eventpipe.loader.discovery import Candidate, next_watermark, prefixes
from eventpipe.settings import Settings

EVENT = {"type": "track", "messageId": "m1", "event": "x", "source": "dev", "anonymousId": "a",
         "timestamp": "2026-11-20T10:00:00.000Z", "receivedAt": "2026-11-20T10:00:01.000Z"}  # fmt: skip


def test_table_of_key():
    assert (
        table_of_key("p/raw/events/dt=2026-11-20/hr=01/events+0+0000000000000000000.jsonl.gz", "p/")
        == "events"
    )
    assert (
        table_of_key("agg/experiment_daily/dt=2026-11-20/experiment_daily+1+01.jsonl.gz")
        == "experiment_daily"
    )
    assert table_of_key("agg/events/dt=2026-11-20/x.jsonl.gz") is None
    assert table_of_key("corrections/dt=2026-11-20/engagement_daily.jsonl.gz") is None
    assert table_of_key("other/raw/events/x.jsonl.gz", "p/") is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"plain", "bad_gzip"),
        (gzip.compress(b"\x00")[:-4], "bad_gzip"),
        (gzip.compress(b'{"messageId": "\x01"}\n'), "bad_json"),  # would break the stage's CSV
    ],
)
def test_corrupt_objects_say_why(body, reason):
    with pytest.raises(CorruptBatch) as caught:
        parse_batch("k", "events", body)
    assert caught.value.reason == reason


def test_lines_pass_through_unchanged_but_for_bare_carriage_returns():
    body = gzip.compress(orjson.dumps(EVENT) + b"\r\n\n  \n" + orjson.dumps({**EVENT, "messageId": "m2"}))
    batch = parse_batch("k", "events", body)
    assert batch.rows == 2 and batch.lines[0] == orjson.dumps(EVENT) + b" "
    assert batch.sample_received_at(10) == [EVENT["receivedAt"]] * 2
    assert batch_from_rows("k", "engagement_daily", [{"day": "2026-11-20"}]).sample_received_at(5) == []


def test_discovery_lists_from_the_watermark_with_a_day_of_slack():
    settings = Settings(s3_prefix="p/")
    full = prefixes(settings, None, date(2026, 11, 20))
    assert full == ["p/raw/events/", "p/agg/engagement_daily/", "p/agg/experiment_daily/",
                    "p/agg/experiment_assignments/"]  # fmt: skip
    daily = prefixes(settings, date(2026, 11, 19), date(2026, 11, 20))
    assert "p/raw/events/dt=2026-11-18/" in daily and "p/raw/events/dt=2026-11-21/" in daily
    assert len(prefixes(settings, date(2000, 1, 1), date(2026, 11, 20))) <= 4 * 62
    pending = [Candidate("k", "events", date(2026, 11, 17), None), Candidate("j", "events", None, None)]
    assert next_watermark(pending, date(2026, 11, 20)) == date(2026, 11, 17)
    assert next_watermark([], date(2026, 11, 20)) == date(2026, 11, 20)


@pytest.mark.parametrize(
    "key",
    [
        "raw/events/../../corrections/dt=2026-11-20/engagement_daily.jsonl.gz",
        "p/raw/events/../../../q/raw/events/dt=2026-11-20/hr=01/events+0+0000000000000000000.jsonl.gz",
        "raw/events/./dt=2026-11-20/hr=01/events+0+0000000000000000000.jsonl.gz",
        "raw/events//dt=2026-11-20/hr=01/events+0+0000000000000000000.jsonl.gz",
        "raw/events/dt=2026-11-20\\..\\x.jsonl.gz",
        "raw/events/dt=2026-11-20/hr=01/\x1b[2Jevents+0+0000000000000000000.jsonl.gz",
    ],
)
def test_keys_that_read_as_other_paths_feed_no_table(key):
    assert table_of_key(key, "p/" if key.startswith("p/") else "") is None


def test_an_object_that_inflates_past_the_cap_is_too_large_not_read():
    bomb = gzip.compress(b"\n" * (2 * 1024 * 1024))  # 2 MiB of lines in ~2 KB
    with pytest.raises(CorruptBatch) as caught:
        parse_batch("k", "events", bomb, limit=1024 * 1024)
    assert caught.value.reason == "too_large"
    assert parse_batch("k", "events", bomb, limit=4 * 1024 * 1024).rows == 0


def test_every_gzip_member_is_read_under_one_cap():
    two = gzip.compress(orjson.dumps(EVENT) + b"\n") + gzip.compress(
        orjson.dumps({**EVENT, "messageId": "m2"})
    )
    assert parse_batch("k", "events", two).rows == 2
    with pytest.raises(CorruptBatch):
        parse_batch("k", "events", two, limit=len(orjson.dumps(EVENT)) + 5)
