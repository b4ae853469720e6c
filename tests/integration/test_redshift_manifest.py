"""Redshift's one COPY per load group, with its manifest on the real S3 API server: the load
transaction (``load_group``) of the Redshift dialect -- its claim under the ledger's lock,
its manifests and statements -- on PostgreSQL, where only the cluster's side of the COPY is
done by the harness (tests/support/redshift_harness.py ``CopyFromS3``: it reads the manifest
from S3 as the cluster would). A real Redshift never ran this (docs/loader.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from eventpipe.loader.batches import Batch
from eventpipe.loader.load import load_group
from eventpipe.loader.migrations import migrate
from eventpipe.s3 import list_keys
from eventpipe.settings import Settings
from tests.support.loader import (
    NOW,
    expected_events,
    loaded_events,
    query,
    synthetic_events,
    write_agg,
    write_raw,
)
from tests.support.redshift_harness import ManifestCopyHarness

pytestmark = pytest.mark.integration
PER_OBJECT = 40


@pytest.fixture
def harness(settings: Settings, s3: Any) -> ManifestCopyHarness:
    return ManifestCopyHarness(s3, settings.s3_bucket, f"{settings.s3_prefix}manifests/")


@pytest.fixture
def conn(settings: Settings, pg_schema: str, harness: ManifestCopyHarness) -> Iterator[Any]:
    connection = psycopg2.connect(settings.warehouse_dsn)
    migrate(connection, harness, pg_schema)
    yield connection
    connection.close()


def _manifests(s3: Any, settings: Settings) -> list[str]:
    return [o["Key"] for o in list_keys(s3, settings.s3_bucket, f"{settings.s3_prefix}manifests/")]


def _urls(settings: Settings, keys: list[str]) -> list[str]:
    return [f"s3://{settings.s3_bucket}/{key}" for key in keys]


def test_one_copy_lists_exactly_the_objects_this_load_claimed(settings, s3, pg_schema, harness, conn):
    events = synthetic_events(seed=11, users=30)
    keys = write_raw(s3, settings, events, PER_OBJECT)
    assert len(keys) >= 4
    lines = {key: len(events[n * PER_OBJECT : (n + 1) * PER_OBJECT]) for n, key in enumerate(keys)}
    first = load_group(conn, harness, pg_schema, "events", [Batch(keys[1], "events", [])])  # another loader's
    assert first.loaded == {keys[1]: lines[keys[1]]}

    result = load_group(conn, harness, pg_schema, "events", [Batch(k, "events", []) for k in keys])

    assert result.skipped == [keys[1]] and result.loaded == {k: lines[k] for k in keys if k != keys[1]}
    group = harness.read_manifests[-1]
    assert [e["url"] for e in group["entries"]] == _urls(settings, [k for k in keys if k != keys[1]])
    assert all(e["mandatory"] is True for e in group["entries"])
    assert len(harness.read_manifests) == 2  # one COPY for the other loader's object, one for the group
    assert _manifests(s3, settings) == []  # each deleted once its COPY returned
    assert loaded_events(settings) == expected_events(events)  # rows without a batch key merge alike
    assert dict(query(settings, "SELECT key, rows FROM load_ledger")) == lines


def test_a_failed_copy_loads_nothing_and_leaves_no_manifest(settings, s3, pg_schema, harness, conn):
    keys = write_raw(s3, settings, synthetic_events(seed=12, users=10), PER_OBJECT)
    s3.delete_object(Bucket=settings.s3_bucket, Key=keys[-1])  # a listed object gone: mandatory

    with pytest.raises(psycopg2.InternalError, match="Manifest file is not found"):
        load_group(conn, harness, pg_schema, "events", [Batch(k, "events", []) for k in keys])

    assert _manifests(s3, settings) == []
    assert query(settings, "SELECT COUNT(*) FROM load_ledger") == [(0,)]
    assert query(settings, "SELECT COUNT(*) FROM events") == [(0,)]


def _deltas(count: int) -> list[dict[str, Any]]:
    """One ``agg/engagement_daily`` object's lines: ``count`` events of each name today."""
    day = NOW.date().isoformat()
    return [
        {"day": day, "event": event, "event_count": count, "user_count": 1, "received_day": day}
        for event in ("Signed Up", "Buy")
    ]


def test_delta_objects_keep_one_copy_each_and_their_batch_keys(settings, s3, pg_schema, harness, conn):
    keys = [write_agg(s3, settings, "engagement_daily", _deltas(n), offset=n) for n in (1, 2)]

    batches = [Batch(k, "engagement_daily", []) for k in keys]
    result = load_group(conn, harness, pg_schema, "engagement_daily", batches)

    assert result.loaded == dict.fromkeys(keys, 2)
    listed = [[e["url"] for e in m["entries"]] for m in harness.read_manifests]
    assert listed == [_urls(settings, [k]) for k in keys]
    deltas = query(settings, "SELECT batch_key, event, event_count FROM engagement_daily_deltas")
    assert sorted(deltas) == sorted(
        (k, e, n) for n, k in ((1, keys[0]), (2, keys[1])) for e in ("Signed Up", "Buy")
    )
    totals = query(settings, "SELECT event, event_count FROM engagement_daily")
    assert sorted(totals) == [("Buy", 3), ("Signed Up", 3)]
    assert _manifests(s3, settings) == []
