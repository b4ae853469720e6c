"""Funnels and retention cohorts through the real PostgreSQL, exact against the independent
reference (tests/support/funnels.py) on generated histories: several devices per person,
anonymous -> identified users, shared devices, renames, retried copies, and links that
land after the events they re-attribute (each history is loaded in several raw objects).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.dialects import get_dialect, models
from eventpipe.loader.load import load_group
from eventpipe.reports import funnel_service
from eventpipe.reports.funnels import FunnelQuery, RetentionQuery, funnel_steps, retention_json
from eventpipe.reports.views import ensure_report_views
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts
from tests.support import funnels as ref
from tests.support.identities import EXPERIMENT, START, stitched_histories
from tests.support.redshift_harness import RedshiftOnPostgres
from tests.support.warehouse import migrated_connection

pytestmark = pytest.mark.integration
POSTGRES = get_dialect("postgres")
DAY0 = START.date()
VIEWS = (models.COHORTS, models.STEP_EVENTS, models.PERSONS)  # dependants first


@pytest.fixture
def conn(settings: Settings, pg_schema: str) -> Iterator[Any]:
    with migrated_connection(settings.warehouse_dsn, pg_schema) as connection:
        yield connection


def load_in_pieces(conn: Any, schema: str, events: list[dict[str, Any]], objects: int) -> None:
    with conn, conn.cursor() as cur:
        for table in ("events", "identities", "load_ledger"):
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
    for n in range(objects):  # arrival order: links often land after what they re-attribute
        batch = batch_from_rows(f"raw/events/{n}.jsonl.gz", "events", events[n::objects])
        load_group(conn, POSTGRES, schema, "events", [batch])


def _call(conn: Any, schema: str, function: str, args: str, params: tuple) -> list[tuple]:
    ensure_report_views(conn, schema)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT * FROM {}(" + args + ")").format(sql.Identifier(schema, function)), params
        )
        return cur.fetchall()


def _instants(first: date, last: date) -> tuple[datetime, datetime]:
    return datetime.combine(first, time(0), UTC), datetime.combine(last + timedelta(days=1), time(0), UTC)


def dashboard_funnel(conn: Any, schema: str, query: FunnelQuery) -> list[int]:
    """Grafana's funnel panel function: persons per step reached by anyone."""
    params = (list(query.steps), *_instants(query.first_day, query.last_day), query.within)
    rows = _call(conn, schema, "funnel_persons", "%s, %s, %s, %s", params)
    assert [(step, event) for step, event, _ in rows] == [(n + 1, query.steps[n]) for n in range(len(rows))]
    return [persons for _, _, persons in rows]


def dashboard_retention(conn: Any, schema: str, query: RetentionQuery) -> dict[str, Any]:
    """Grafana's retention panel function, in the CLI's JSON shape."""
    params = (query.cohort_event, query.return_event, *_instants(query.first_day, query.last_day))
    rows = _call(conn, schema, "retention_daily", "%s, %s, %s, %s", params)
    sizes = {cohort: n for cohort, k, n in rows if k is None}
    return retention_json(query, sizes, {(cohort, k): n for cohort, k, n in rows if k is not None})


days = st.integers(-1, 4).map(lambda n: DAY0 + timedelta(days=n))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(stitched_histories(people=6), st.integers(1, 3), days, days, st.integers(1, 72))
def test_funnel_equals_the_reference(
    conn: Any, pg_schema: str, history: list[dict[str, Any]], objects: int, a: date, b: date, hours: int
) -> None:
    load_in_pieces(conn, pg_schema, history, objects)
    first, last = min(a, b), max(a, b)
    query = FunnelQuery(ref.FUNNEL, first, last, timedelta(hours=hours))
    expected = ref.funnel(history, ref.FUNNEL, first, last, query.within)
    assert funnel_service.funnel(conn, pg_schema, query) == {"steps": funnel_steps(ref.FUNNEL, expected)}
    assert dashboard_funnel(conn, pg_schema, query) == [n for n in expected if n]
    by_variant = funnel_service.funnel_counts(conn, pg_schema, query, EXPERIMENT)
    assert by_variant == ref.funnel_by_variant(history, EXPERIMENT, ref.FUNNEL, first, last, query.within)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    stitched_histories(people=6, span_minutes=20 * 1440),
    st.integers(1, 3),
    st.sampled_from(["day", "week"]),
    st.integers(0, 20),
    st.integers(0, 20),
    st.sampled_from([("page", "Order Completed"), ("Product Viewed", "page"), ("page", "page")]),
)
def test_retention_equals_the_reference(
    conn: Any, pg_schema: str, history: list[dict[str, Any]], objects: int, period: str, a: int, b: int,
    events: tuple[str, str],
) -> None:  # fmt: skip
    load_in_pieces(conn, pg_schema, history, objects)
    first, last = DAY0 + timedelta(days=min(a, b)), DAY0 + timedelta(days=max(a, b))
    query = RetentionQuery(events[0], events[1], period, first, last)
    expected = ref.retention(history, events[0], events[1], period, first, last)
    assert funnel_service.retention(conn, pg_schema, query) == expected
    if period == "day":
        assert dashboard_retention(conn, pg_schema, query) == expected


def _event(mid: str, kind: str, at: datetime, user: str | None, anon: str | None, **kw: Any) -> dict:
    return {"type": kind, "messageId": mid, "userId": user, "anonymousId": anon, "timestamp": format_ts(at),
            "receivedAt": format_ts(at + timedelta(hours=30)), "source": "dev", **kw}  # fmt: skip


def test_rules_on_a_written_out_history(conn: Any, pg_schema: str) -> None:
    """Each rule once, by hand: stitching across devices, the within bound (inclusive), step
    order, entry by the earliest in-range first step, and exposure after entry left out."""
    t0 = datetime(2026, 11, 20, 9, tzinfo=UTC)
    expose = {"event": "Experiment Viewed", "properties": {"experiment_id": "exp-f", "variation_id": "green"}}
    control = {
        "event": "Experiment Viewed",
        "properties": {"experiment_id": "exp-f", "variation_id": "control"},
    }
    history = [
        _event("a1", "track", t0 - timedelta(minutes=1), None, "phone", **expose),
        _event("a2", "page", t0, None, "phone", name="Home"),  # ann enters anonymously
        _event("a3", "track", t0 + timedelta(hours=1), "ann", "laptop", event="Product Viewed"),
        _event("a4", "identify", t0 + timedelta(hours=2), "ann", "phone"),  # links phone, arrives late
        _event("a5", "track", t0 + timedelta(hours=24), "ann", None, event="Order Completed"),  # exactly 24h
        _event("b1", "track", t0, "bob", None, event="Product Viewed"),  # before his entry: not step 2
        _event("b2", "page", t0 + timedelta(hours=1), "bob", None),
        _event("b3", "track", t0 + timedelta(hours=2), "bob", None, **control),  # exposed after entry
        _event("c1", "page", t0 - timedelta(days=1), "cat", None),  # the day before --from
        _event("c2", "page", t0 + timedelta(days=1), "cat", None),  # enters here, on the 21st
        _event("c3", "track", t0 + timedelta(days=1, hours=25), "cat", None, event="Product Viewed"),  # > 24h
    ]
    load_in_pieces(conn, pg_schema, history, 1)
    query = FunnelQuery(ref.FUNNEL, t0.date(), t0.date() + timedelta(days=1))
    assert funnel_service.funnel_counts(conn, pg_schema, query) == {None: [3, 1, 1]}
    assert funnel_service.funnel_counts(conn, pg_schema, query, "exp-f") == {"green": [1, 1, 1]}
    retention = RetentionQuery(
        "page", "page", "day", t0.date() - timedelta(days=1), t0.date() + timedelta(days=1)
    )
    assert funnel_service.retention(conn, pg_schema, retention) == {
        "cohorts": [
            {"cohort": "2026-11-19", "persons": 1, "returned": [0, 1]},
            {"cohort": "2026-11-20", "persons": 2, "returned": [0]},
        ]
    }


def use_redshift_models(conn: Any, schema: str) -> None:
    """Replace the views by the Redshift dialect's (winning links by ROW_NUMBER, UTC date by
    CONVERT_TIMEZONE's stand-in): the funnel and retention SQL is the same on both."""
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP VIEW {}, {}, {}").format(*(sql.Identifier(schema, v) for v in VIEWS)))
        for statement in models.statements(RedshiftOnPostgres(), schema):
            cur.execute(statement)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(stitched_histories(people=6, span_minutes=20 * 1440), st.integers(1, 3), days, days,
       st.sampled_from(["day", "week"]))  # fmt: skip
def test_the_redshift_models_give_the_reference_numbers(
    conn: Any, pg_schema: str, history: list[dict[str, Any]], objects: int, a: date, b: date, period: str
) -> None:
    load_in_pieces(conn, pg_schema, history, objects)
    use_redshift_models(conn, pg_schema)
    first, last = min(a, b), max(a, b)
    query = FunnelQuery(ref.FUNNEL, first, last)
    expected = ref.funnel(history, ref.FUNNEL, first, last, query.within)
    assert funnel_service.funnel(conn, pg_schema, query) == {"steps": funnel_steps(ref.FUNNEL, expected)}
    retention = RetentionQuery("page", "Order Completed", period, first, last)
    assert funnel_service.retention(conn, pg_schema, retention) == ref.retention(
        history, "page", "Order Completed", period, first, last
    )
