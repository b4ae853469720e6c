"""The nightly reprocess beside corrupt raw objects, on the real S3 API server and PostgreSQL:
quarantined objects are skipped (the day is exact), a corrupt object the loader has not
quarantined fails the run naming it (nothing written) until it is quarantined, and the job's
line check refuses exactly what the loader refuses."""

from __future__ import annotations

import argparse
import gzip
import threading
import time
from typing import Any

import orjson
import psycopg2
import pytest
from prometheus_client import CollectorRegistry

from eventpipe.bootstrap import build_warehouse
from eventpipe.errors import WarehouseRefused
from eventpipe.keys import raw_key
from eventpipe.loader import commands
from eventpipe.loader.batches import CorruptBatch, parse_batch
from eventpipe.loader.load import load_group
from eventpipe.loader.reprocess import pipeline
from eventpipe.loader.reprocess.lines import event_lines
from eventpipe.loader.reprocess.pipeline import CorruptInputs
from eventpipe.loader.warehouse import quarantine
from eventpipe.settings import Settings
from eventpipe.timeutil import parse_ts
from tests.support.histories import DAY
from tests.support.reprocess import IN_ORDER, day_rows, dump, prepare, run_nightly, truth_rows

pytestmark = pytest.mark.integration

GOOD = IN_ORDER[0]


def put_corrupt(s3: Any, settings: Settings, body: bytes, n: int = 0) -> str:
    key = settings.s3_prefix + raw_key(parse_ts("2026-11-26T09:30:00.000Z"), 5, 10**12 + n)
    s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)
    return key


def set_aside(settings: Settings, key: str, reason: str = "bad_gzip") -> None:
    wh = build_warehouse(settings)
    try:
        wh.run(lambda conn: quarantine(conn, wh.schema, key, "events", reason, "test"))
    finally:
        wh.close()


def is_final(settings: Settings) -> bool:
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            psycopg2.sql.SQL("SELECT is_final FROM {} WHERE day = %s").format(
                psycopg2.sql.Identifier(settings.warehouse_schema, "day_status")
            ),
            (DAY,),
        )
        row = cur.fetchone()
    conn.close()
    return bool(row and row[0])


def test_a_quarantined_object_is_skipped_and_the_day_is_exact(s3, settings, pg_schema):
    prepare(settings, s3, IN_ORDER)
    key = put_corrupt(s3, settings, b"this is not gzip")
    set_aside(settings, key)
    registry = CollectorRegistry()
    result = run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    assert result.skipped == [{"key": key, "reason": "quarantined", "detail": ""}]
    assert day_rows(dump(settings), DAY) == truth_rows(IN_ORDER, DAY)
    assert is_final(settings)
    sample = registry.get_sample_value
    assert sample("eventpipe_reprocess_skipped_objects_total", {"reason": "quarantined"}) == 1


def test_an_unquarantined_corrupt_object_fails_the_run_until_it_is_quarantined(s3, settings, pg_schema):
    prepare(settings, s3, IN_ORDER)
    key = put_corrupt(s3, settings, gzip.compress(orjson.dumps(GOOD) + b"\n{not json\n"))
    before = dump(settings)
    registry = CollectorRegistry()
    with pytest.raises(CorruptInputs) as caught:
        run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=registry, quarantine_wait_s=0)
    assert key in str(caught.value) and "bad_json" in str(caught.value) and "line 2" in str(caught.value)
    assert not caught.value.loaded
    assert dump(settings) == before and not is_final(settings)  # nothing written
    sample = registry.get_sample_value
    assert sample("eventpipe_reprocess_skipped_objects_total", {"reason": "bad_json"}) == 1
    assert sample("eventpipe_reprocess_failures_total") == 1
    set_aside(settings, key, "bad_json")  # what the loader (or ops) does
    result = run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    assert [o["key"] for o in result.skipped] == [key]
    assert day_rows(dump(settings), DAY) == truth_rows(IN_ORDER, DAY) and is_final(settings)


def test_the_run_waits_for_the_loader_to_quarantine(s3, settings, pg_schema, monkeypatch):
    prepare(settings, s3, IN_ORDER)
    key = put_corrupt(s3, settings, gzip.compress(b'{"type":"track"}\n'))
    monkeypatch.setattr(pipeline, "QUARANTINE_POLL_S", 0.2)
    loader = threading.Timer(1.0, set_aside, (settings, key, "bad_shape"))
    loader.start()
    started = time.monotonic()
    try:
        result = run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    finally:
        loader.join()
    assert time.monotonic() - started < 30
    assert result.skipped == [{"key": key, "reason": "quarantined", "detail": "line 1: messageId is missing"}]
    assert day_rows(dump(settings), DAY) == truth_rows(IN_ORDER, DAY)


def test_the_command_reports_skipped_and_corrupt_objects(s3, settings, pg_schema, monkeypatch, capsys):
    prepare(settings, s3, IN_ORDER)
    corrupt = put_corrupt(s3, settings, b"this is not gzip")
    monkeypatch.setattr("eventpipe.settings.get_settings", lambda: settings)
    monkeypatch.setattr("eventpipe.logs.configure", lambda *a, **k: None)
    args = argparse.Namespace(date=DAY, lateness_days=1, runner="inline", quarantine_wait_s=0.0)
    assert commands._reprocess(args) == 1
    out = capsys.readouterr()
    failed = orjson.loads(out.out)
    assert (
        failed["corrupt_objects"][0]["key"] == corrupt
        and failed["corrupt_objects"][0]["reason"] == "bad_gzip"
    )
    assert corrupt in out.err
    set_aside(settings, corrupt)
    assert commands._reprocess(args) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["skipped_objects"] == [{"key": corrupt, "reason": "quarantined", "detail": ""}]


BODIES = {  # object -> the loader's verdict must be the job's
    "not gzip": b"this is not gzip",
    "not JSON": gzip.compress(b"{not json\n"),
    "no messageId": gzip.compress(b'{"type":"track"}\n'),
    "no source": gzip.compress(orjson.dumps({k: v for k, v in GOOD.items() if k != "source"})),
    "null type": gzip.compress(orjson.dumps({**GOOD, "type": None})),
    "array": gzip.compress(b"[1, 2]\n"),
    "bad timestamp": gzip.compress(orjson.dumps({**GOOD, "timestamp": "2026-13-45T00:00:00Z"})),
    "numeric sentAt": gzip.compress(orjson.dumps({**GOOD, "sentAt": 12})),
    "NUL escape": gzip.compress(orjson.dumps({**GOOD, "properties": {"a": "x\u0000y"}})),
    "escaped backslash": gzip.compress(orjson.dumps({**GOOD, "properties": {"a": "C:\\u0000"}})),
    "blank lines and CRLF": gzip.compress(b"\n" + orjson.dumps(GOOD) + b"\r\n\n"),
    "good": gzip.compress(orjson.dumps(GOOD) + b"\n"),
}


def loader_verdict(settings: Settings, key: str, body: bytes) -> str | None:
    """What the loader does with the object on PostgreSQL: None (loaded) or its quarantine reason."""
    try:
        batch = parse_batch(key, "events", body)
    except CorruptBatch as exc:
        return exc.reason
    wh = build_warehouse(settings)
    try:
        wh.run(lambda conn: load_group(conn, wh.dialect, wh.schema, "events", [batch]))
    except WarehouseRefused as exc:
        assert exc.data_error, exc
        return exc.reason
    finally:
        wh.close()
    return None


def job_verdict(key: str, body: bytes) -> str | None:
    try:
        event_lines(key, body)
    except CorruptBatch as exc:
        return exc.reason
    return None


def test_the_job_refuses_exactly_what_the_loader_refuses(s3, settings, pg_schema):
    prepare(settings, s3, [])
    verdicts = {}
    for n, (name, body) in enumerate(BODIES.items()):
        key = f"{settings.s3_prefix}raw/events/dt=2026-11-26/hr=09/events+5+{n:019}.jsonl.gz"
        verdicts[name] = (loader_verdict(settings, key, body), job_verdict(key, body))
    assert {n: v for n, v in verdicts.items() if v[0] != v[1]} == {}, verdicts
    assert verdicts["good"] == (None, None) and verdicts["not gzip"] == ("bad_gzip", "bad_gzip")
