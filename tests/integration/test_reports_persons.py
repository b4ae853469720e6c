"""Experiment reports count persons (identity stitching) against the real PostgreSQL.

Events go through the loader's own load transaction (``load_group``), which also derives
``identities``; the expected numbers come from the independent reference
(``tests.reference``): its persons, its assignments, a brute-force converter loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.dialects import get_dialect
from eventpipe.loader.load import load_group
from eventpipe.loader.migrations import migrate
from eventpipe.reports import stitching
from eventpipe.reports import warehouse as wh
from eventpipe.reports.views import ensure_report_views
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts
from tests import reference
from tests.support.identities import EXPERIMENT, GOAL, stitched_histories
from tests.support.warehouse import migrated_connection

pytestmark = pytest.mark.integration
POSTGRES = get_dialect("postgres")


@pytest.fixture
def conn(settings: Settings, pg_schema: str) -> Iterator[Any]:
    with migrated_connection(settings.warehouse_dsn, pg_schema) as connection:
        yield connection


def load(conn: Any, schema: str, events: list[dict[str, Any]], key: str) -> None:
    """One raw object of ``events`` through the loader's transaction (copies included)."""
    load_group(conn, POSTGRES, schema, "events", [batch_from_rows(key, "events", events)])


def expected(
    events: list[dict[str, Any]], goal: str = GOAL, stitch: bool = True
) -> dict[str, tuple[int, int]]:
    """variant -> (persons, converters) by the reference's persons and assignments (raw ids
    unless ``stitch``)."""
    kept = reference.deduplicate(events)
    person = reference.persons(kept) if stitch else (lambda e: e.get("userId") or e["anonymousId"])
    goals: dict[str, list[str]] = defaultdict(list)
    for e in kept:
        if (e.get("event") if e["type"] == "track" else e["type"]) == goal:
            goals[person(e)].append(e["timestamp"])
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (experiment, who), (variant, first) in reference.truth(events, stitch)[
        "experiment_assignments"
    ].items():
        if experiment == EXPERIMENT:
            out[variant][0] += 1
            out[variant][1] += any(at >= first for at in goals[who])
    return {v: (n, c) for v, (n, c) in out.items()}


def found(conn: Any, schema: str, goal: str = GOAL) -> dict[str, tuple[int, int]]:
    return {c.variant: (c.users, c.converters) for c in wh.variant_counts(conn, schema, EXPERIMENT, goal)}


def clear(conn: Any, schema: str) -> None:
    with conn, conn.cursor() as cur:
        for table in ("events", "identities", "load_ledger"):
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(stitched_histories(people=6), st.integers(1, 4))
def test_report_counts_persons_like_the_reference_whatever_order_links_load_in(
    conn: Any, pg_schema: str, history: list[dict[str, Any]], objects: int
) -> None:
    clear(conn, pg_schema)
    for n in range(objects):  # arrival order: links often land after what they re-attribute
        load(conn, pg_schema, history[n::objects], f"raw/events/{n}.jsonl.gz")
    assert found(conn, pg_schema) == expected(history)
    assert found(conn, pg_schema, "page") == expected(history, "page")
    drift = stitching.experiment_drift(conn, pg_schema, EXPERIMENT, GOAL)
    raw = expected(history, stitch=False)
    assert {d.variant: d.raw_ids for d in drift if d.raw_ids} == {v: n for v, (n, _) in raw.items()}
    assert {d.variant: d.raw_rate for d in drift if d.raw_ids} == {v: c / n for v, (n, c) in raw.items()}
    dau = {
        k[0]: users for k, (_, users) in reference.truth(history)["engagement_daily"].items() if k[1] == "*"
    }
    dau_raw = {
        k[0]: users for k, (_, users) in reference.truth(history, stitch=False)["engagement_daily"].items()
        if k[1] == "*"
    }  # fmt: skip
    assert wh.daily_users(conn, pg_schema) == [(d, dau[d], dau_raw[d]) for d in sorted(dau)]


def test_a_link_that_lands_re_attributes_at_once(conn: Any, pg_schema: str) -> None:
    t0 = datetime(2026, 11, 20, 9, tzinfo=UTC)

    def ev(mid: str, kind: str, minutes: int, user: str | None, anon: str | None, **kw: Any) -> dict:
        at = format_ts(t0 + timedelta(minutes=minutes))
        return {"type": kind, "messageId": mid, "userId": user, "anonymousId": anon, "timestamp": at,
                "receivedAt": at, "source": "dev", **kw}  # fmt: skip

    expose = {
        "event": "Experiment Viewed",
        "properties": {"experiment_id": EXPERIMENT, "variation_id": "green"},
    }
    before = [
        ev("m1", "track", 0, None, "phone", **expose),  # anonymous exposure
        ev("m2", "track", 30, "ann", None, event=GOAL),  # server-side conversion, userId only
        ev("m3", "track", 40, "ann", "laptop", event="Experiment Viewed",
           properties={"experiment_id": EXPERIMENT, "variation_id": "control"}),  # second device, later
    ]  # fmt: skip
    load(conn, pg_schema, before, "raw/events/a.jsonl.gz")
    assert found(conn, pg_schema) == {"green": (1, 0), "control": (1, 0)} == expected(before)
    link = [ev("m4", "identify", 10, "ann", "phone")]
    load(conn, pg_schema, link, "raw/events/b.jsonl.gz")
    assert found(conn, pg_schema) == {"green": (1, 1)} == expected(before + link)
    ensure_report_views(conn, pg_schema)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT variant, users, converters FROM {}(%s, %s)").format(
                sql.Identifier(pg_schema, "experiment_results")
            ),
            (EXPERIMENT, GOAL),
        )
        assert cur.fetchall() == [("green", 1, 1)]
    load(conn, pg_schema, link, "raw/events/b.jsonl.gz")  # a replayed object: loaded once
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT anonymous_id, user_id, message_id FROM {}").format(
            sql.Identifier(pg_schema, "identities")))  # fmt: skip
        assert cur.fetchall() == [("phone", "ann", "m4")]


def test_migration_backfills_links_of_events_loaded_before_it(conn: Any, pg_schema: str) -> None:
    rows = [{"type": "alias", "messageId": "m1", "userId": "new", "anonymousId": None, "previousId": "old",
             "timestamp": "2026-11-20T09:00:00.000Z", "receivedAt": "2026-11-20T09:00:01.000Z",
             "source": "dev"}]  # fmt: skip
    load(conn, pg_schema, rows, "raw/events/a.jsonl.gz")
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(pg_schema, "identities")))
        cur.execute(sql.SQL("DELETE FROM {} WHERE version = 2").format(
            sql.Identifier(pg_schema, "schema_migrations")))  # fmt: skip
    assert migrate(conn, POSTGRES, pg_schema) == [2]
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT anonymous_id, user_id, linked_at FROM {}").format(
            sql.Identifier(pg_schema, "identities")))  # fmt: skip
        assert [(a, u, format_ts(t)) for a, u, t in cur.fetchall()] == [("old", "new", rows[0]["timestamp"])]
