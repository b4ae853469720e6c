"""The Redshift dialect's SQL -- loads (merge, identities, late links), the nightly day
replacement, verify and the report views -- run on PostgreSQL through the semantic harness
(tests/support/redshift_harness.py: only COPY-from-S3 and the primitives without shared
syntax swapped), and its numbers checked against the reference truth, not just its syntax."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from psycopg2 import sql

from eventpipe.bootstrap import build_warehouse
from eventpipe.loader.batches import parse_batch
from eventpipe.loader.dialects.postgres import PostgresDialect
from eventpipe.loader.load import load_group
from eventpipe.loader.verify import verify_day
from eventpipe.reports import sqlbuild
from tests import reference
from tests.support.archive import archive
from tests.support.histories import histories
from tests.support.redshift_harness import RedshiftOnPostgres
from tests.support.reprocess import DAYS, assert_days_equal_the_truth, prepare, reprocess_days
from tests.support.warehouse import fresh_example

pytestmark = pytest.mark.integration
HARNESS = RedshiftOnPostgres()
POSTGRES = PostgresDialect()
FEW = settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a slow test: no shrinking
)


@pytest.fixture
def redshift_sql(monkeypatch: pytest.MonkeyPatch) -> RedshiftOnPostgres:
    """Every Warehouse the loader and the nightly open speaks the Redshift dialect's SQL
    (the composition root hands out the harness). The nightly's day lock has no shared
    syntax (Redshift's lock row asks STV_SESSIONS which sessions live): like COPY from S3,
    the harness takes PostgreSQL's there; tests/unit/test_loader_sql.py checks Redshift's."""
    monkeypatch.setattr("eventpipe.bootstrap.build_dialect", lambda settings, s3=None: HARNESS)
    monkeypatch.setattr(HARNESS, "acquire_day_lock", POSTGRES.acquire_day_lock)
    monkeypatch.setattr(HARNESS, "release_day_lock", POSTGRES.release_day_lock)
    return HARNESS


def _track(mid: str, name: str, at: str, **props: str) -> dict[str, Any]:
    return {"type": "track", "event": name, "messageId": mid, "userId": "zz", "anonymousId": None,
            "timestamp": f"2026-11-26T{at}.000Z", "receivedAt": f"2026-11-26T{at}.500Z",
            "properties": props, "context": {}, "source": "dev"}  # fmt: skip


# so that every example has an experiment with a reached goal to compare
CONVERTED = [
    _track("g1", "Experiment Viewed", "08:00:00", experiment_id="x", variation_id="a"),
    _track("g2", "Buy", "09:00:00"),
]


def load_raw(example: Any, s3: Any, keys: list[str]) -> None:
    """The raw objects into ``events`` as the loader loads them, in the Redshift dialect."""
    wh = build_warehouse(example)
    try:
        for key in keys:
            body = s3.get_object(Bucket=example.s3_bucket, Key=key)["Body"].read()
            batch = parse_batch(key, "events", body)
            wh.run(lambda conn, b=batch: load_group(conn, wh.dialect, wh.schema, "events", [b]))
    finally:
        wh.close()


@FEW
@seed(1717)
@given(history=histories(max_events=60, max_lag_minutes=1439))
def test_redshift_loads_and_nightly_equal_the_truth(s3, settings, pg_schema, redshift_sql, history):
    example = fresh_example(settings, pg_schema)
    prepare(example, s3, history)  # migrations and the streamed deltas, in Redshift SQL
    load_raw(example, s3, archive(s3, example, history))
    once = reprocess_days(example, DAYS)
    assert_days_equal_the_truth(once, history, DAYS)
    conn = psycopg2.connect(example.warehouse_dsn)
    try:
        stored = _rows(conn, sql.SQL("SELECT count(*) FROM {}.events").format(sql.Identifier(pg_schema)))
        assert stored == [(len(reference.deduplicate(history)),)]
        for day in DAYS:  # verify's own SQL, in the Redshift dialect, finds nothing to report
            assert verify_day(conn, redshift_sql, pg_schema, day).ok, day
    finally:
        conn.close()


@FEW
@seed(1718)
@given(history=histories(max_events=60, max_lag_minutes=1439))
def test_redshift_report_view_equals_the_generated_report_queries(
    s3, settings, pg_schema, redshift_sql, history
):
    """``experiment_results_by_goal`` (Redshift's plain view) gives, per goal, the numbers of
    ``experiments report`` (the CLI's generated query) on both dialects."""
    example = fresh_example(settings, pg_schema)
    history = history + CONVERTED
    prepare(example, s3, history)
    load_raw(example, s3, archive(s3, example, history))
    conn = psycopg2.connect(example.warehouse_dsn)
    try:
        view = sql.SQL("SELECT experiment_id, goal, variant, users, converters, rate FROM {}").format(
            sql.Identifier(pg_schema, "experiment_results_by_goal")
        )
        found = _rows(conn, view)
        assert ("x", "Buy") in {(x, g) for x, g, *_ in found}
        for experiment, goal in sorted({(x, g) for x, g, *_ in found}):
            by_view = sorted((v, u, c) for x, g, v, u, c, _ in found if (x, g) == (experiment, goal))
            x, g = sql.Literal(experiment), sql.Literal(goal)
            for dialect in (HARNESS, sqlbuild.POSTGRES):
                generated = _rows(conn, sqlbuild.variant_counts(pg_schema, x, g, dialect=dialect))
                assert by_view == sorted((v, u, c) for v, u, c, _ in generated), (experiment, goal, dialect)
            rates = {v: rate for x2, g2, v, u, c, rate in found if (x2, g2) == (experiment, goal)}
            assert all(rates[v] == pytest.approx(c / u) for v, u, c in by_view)
    finally:
        conn.close()


def _rows(conn: Any, query: sql.Composable) -> list[tuple]:
    with conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()
