"""SQL generation for both dialects, without a server: every statement a load, a
migration or a day replacement runs is rendered and, for Redshift, parsed by sqlglot's
Redshift dialect (Redshift itself cannot run here)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import orjson
import psycopg2
import pytest
import sqlglot
from psycopg2 import sql

from eventpipe.loader import migrations
from eventpipe.loader.dialects import bookkeeping, get_dialect, truth
from eventpipe.loader.dialects import common as c
from eventpipe.loader.dialects.merges import merge_statements
from eventpipe.loader.dialects.redshift_copy import manifest
from eventpipe.loader.dialects.redshift_lint import problems
from eventpipe.loader.tables import TARGETS
from tests.support.dialect_sql import all_statements, redshift, render
from tests.support.redshift_session import MemoryS3, RecordingCursor

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")  # a quoted string, '' being an escaped quote


@pytest.mark.parametrize("name", ["postgres", "redshift"])
def test_every_statement_is_composed_and_renders(name):
    dialect = redshift() if name == "redshift" else get_dialect(name)
    statements = all_statements(dialect)
    assert len(statements) > 60
    for statement in statements:
        assert isinstance(statement, sql.Composable)
        text = render(statement)
        code = SQL_LITERAL.sub("''", text)  # braces inside a literal (JSON, arrays) are data
        assert "{" not in code and "}" not in code, text  # no unfilled placeholders
        assert "TRUNCATE" not in text.upper()


def test_every_redshift_statement_parses_with_sqlglot():
    for statement in all_statements(redshift()):
        text = render(statement)
        parsed = sqlglot.parse_one(text, read="redshift")
        if text.startswith("LOCK "):  # sqlglot keeps LOCK as a command; check its shape instead
            assert re.fullmatch(r'LOCK "analytics"\."(load_ledger|schema_migrations)"', text)
        else:
            assert not isinstance(parsed, sqlglot.exp.Command), text


def test_postgres_statements_parse_with_sqlglot():
    for statement in all_statements(get_dialect("postgres")):
        # PostgreSQL runs these for real in the integration tests; sqlglot lacks two forms
        text = render(statement).replace(" ON COMMIT DROP", "")
        if text.startswith("LOCK TABLE "):
            continue
        assert not isinstance(sqlglot.parse_one(text, read="postgres"), sqlglot.exp.Command), text


def test_redshift_copy_uses_a_mandatory_manifest_and_keeps_maxerror_zero():
    dialect = redshift()
    copy, _, tag = dialect.stage_statements(
        "events", ["p/raw/events/dt=2026-11-20/hr=12/events+0+01.jsonl.gz"]
    )
    text = render(copy)
    assert "FROM 's3://lake/manifests/" in text and "IAM_ROLE 'arn:aws:iam::123456789012:role/loader'" in text
    for part in ("FORMAT AS JSON 'auto ignorecase'", "GZIP", "MANIFEST", "MAXERROR 0", "TIMEFORMAT 'auto'"):
        assert part in text
    assert '"messageid"' in text and '"receivedat"' in text  # stage columns = JSON keys
    assert 'UPDATE "ep_stage" SET "batch_key" = \'p/raw/events' in render(tag)
    entry = orjson.loads(manifest("lake", ["k.jsonl.gz"]))["entries"]
    assert entry == [{"url": "s3://lake/k.jsonl.gz", "mandatory": True}]
    with pytest.raises(ValueError, match="IAM_ROLE"):
        get_dialect("redshift").copy("events", "s3://lake/m")


def test_redshift_types_and_no_upsert_syntax():
    dialect = redshift()
    ddl = " ".join(render(s) for s in migrations.MIGRATIONS[0][2](dialect, "analytics"))
    assert '"properties" SUPER' in ddl and "JSONB" not in ddl
    assert " TEXT" not in ddl  # TEXT would silently be VARCHAR(256)
    assert 'DISTKEY ("message_id")' in ddl
    merges = [s for t in TARGETS for s in merge_statements(dialect, "analytics", t, AT, keyed=False)]
    loads = " ".join(render(s) for s in merges)
    assert "ON CONFLICT" not in loads and "ROW_NUMBER() OVER" in loads


def test_tracking_plan_violations_are_added_by_one_migration_and_staged_by_both_dialects():
    for dialect in (redshift(), get_dialect("postgres")):
        ddl = [render(s) for _, _, build in migrations.MIGRATIONS for s in build(dialect, "analytics")]
        adds = [text for text in ddl if '"tracking_plan_violations"' in text]
        assert len(adds) == 1 and adds[0].startswith('ALTER TABLE "analytics"."events" ADD COLUMN '), adds
        assert adds[0].endswith("SUPER" if dialect.name == "redshift" else "JSONB")
    stage = " ".join(render(s) for s in redshift().create_stage("events"))
    copy, *_ = redshift().stage_statements("events", ["raw/events/x.jsonl.gz"])
    assert '"trackingplanviolations" SUPER' in stage and '"trackingplanviolations"' in render(copy)
    source = render(get_dialect("postgres").typed_source("events"))
    assert "\"doc\" -> 'trackingPlanViolations', 'null'::jsonb) AS \"tracking_plan_violations\"" in source
    merge = " ".join(render(s) for s in get_dialect("postgres").merge_events("analytics"))
    assert '"tracking_plan_violations" = s."tracking_plan_violations"' in merge


def test_postgres_events_merge_keeps_the_earlier_copy():
    text = render(get_dialect("postgres").merge_events("analytics")[0])
    assert text.startswith('MERGE INTO "analytics"."events" USING (SELECT')
    assert 'WHEN MATCHED AND (s."received_at" < "events"."received_at"' in text
    assert "WHEN NOT MATCHED THEN INSERT" in text


def test_aggregate_merge_skips_deltas_inside_a_final_day():
    text = " ".join(
        render(s) for s in c.counts_source(get_dialect("postgres"), "analytics", "engagement_daily")
    )
    assert 'LEFT JOIN "analytics"."day_status"' in text
    assert 'NOT ds."is_final"' in text
    # a final day with a watermark keeps exactly the deltas whose batch it did not contain
    assert 'LEFT JOIN "analytics"."final_batches" AS fb ON fb."day" = s."day" AND fb."batch_key"' in text
    assert '(wm."day" IS NOT NULL AND fb."batch_key" IS NULL)' in text
    # days made final before the watermark existed keep the old cutoff rule
    assert '(wm."day" IS NULL AND (ds."cutoff_day" IS NULL OR s."received_day" > ds."cutoff_day"))' in text


def test_final_batches_are_recorded_once_each_in_chunks():
    statements = [
        render(s) for s in c.record_final_batches("analytics", date(2026, 11, 19), ["b", "a", "b"], 1)
    ]
    assert statements[0] == 'DELETE FROM "analytics"."final_batches" WHERE "day" = \'2026-11-19\'::date'
    assert [s.rsplit("'", 2)[-2] for s in statements[1:]] == ["a", "b"]


def test_a_load_touches_only_final_days_whose_batch_is_not_contained():
    text = render(c.touch_final_days(get_dialect("postgres"), "analytics", "engagement_daily", AT))
    assert text.startswith('UPDATE "analytics"."day_watermark" SET "touched_at" = COALESCE("touched_at", ')
    assert 'WHERE ds."is_final" AND wm."day" IS NOT NULL AND fb."batch_key" IS NULL' in text


def test_literals_are_quoted_not_formatted():
    text = render(c.quarantine_insert("a", "k'); DROP TABLE x; --", "events", "bad_json", "d", AT)[1])
    assert "'k''); DROP TABLE x; --'" in text


@pytest.mark.parametrize(
    ("message", "retryable"),
    [
        ("ERROR: 1023 DETAIL: Serializable isolation violation on table - 123", True),
        ("Load into table 'ep_stage' failed. Check 'stl_load_errors' system table for details.", False),
    ],
)
def test_redshift_retries_serializable_isolation_violations(message, retryable):
    dialect = redshift()
    exc = psycopg2.InternalError(message)
    assert dialect.is_retryable(exc) is retryable
    assert dialect.is_data_error(exc) is not retryable
    assert dialect.is_retryable(psycopg2.OperationalError("server closed the connection"))


def test_redshift_stage_writes_one_mandatory_manifest_per_object_and_counts_rows():
    from eventpipe.bootstrap import build_dialect
    from eventpipe.loader.batches import Batch
    from eventpipe.settings import Settings

    s3 = MemoryS3()
    settings = Settings(
        warehouse_dialect="redshift", redshift_iam_role="arn:aws:iam::1:role/r", s3_prefix="p/"
    )
    dialect = build_dialect(settings, s3)
    cur = RecordingCursor(s3)
    rows = dialect.stage(cur, "engagement_daily", [Batch("p/agg/a.jsonl.gz", "engagement_daily", [])])
    assert rows == {"p/agg/a.jsonl.gz": 7}
    ((name, body),) = cur.at_copy[0].items()  # written for the COPY, deleted after it
    assert name.startswith("eventpipe/p/manifests/") and orjson.loads(body)["entries"][0]["mandatory"] is True
    assert s3.objects == {}
    assert cur.sent[0].startswith('COPY "ep_stage"') and cur.sent[1] == "SELECT PG_LAST_COPY_COUNT()"
    assert cur.sent[2].startswith('UPDATE "ep_stage" SET "batch_key" = \'p/agg/a.jsonl.gz\'')


@pytest.mark.parametrize("name", ["postgres", "redshift"])
def test_verify_queries_parse_in_both_dialects(name):
    dialect = redshift() if name == "redshift" else get_dialect(name)
    found = truth.checks(dialect, "analytics", date(2026, 11, 19), stitched=True)
    assert [c.table for c in found] == ["engagement_daily", "experiment_daily", "experiment_assignments"]
    for check in found:
        text = render(check.query)
        assert not isinstance(sqlglot.parse_one(text, read=name), sqlglot.exp.Command), text
        assert "FULL OUTER JOIN" in text and "'2026-11-19T00:00:00+00:00'::timestamptz" in text
    texts = " ".join(render(c.query) for c in found)
    if name == "redshift":  # SUPER navigation, never PostgreSQL's jsonb operators
        assert 'JSON_TYPEOF("e"."properties"."experiment_id")' in texts and "->" not in texts
    else:
        assert 'jsonb_typeof("e"."properties" -> \'experiment_id\')' in texts


def bookkeeping_statements() -> list[sql.Composable]:
    """What the loader's state, the migrations and the nightly job read and write
    (``dialects.bookkeeping``), with every argument kind they take."""
    schema, day = "analytics", date(2026, 11, 19)
    out = [bookkeeping.watermark_select(schema), *bookkeeping.watermark_replace(schema, day, AT)]
    out += [bookkeeping.row_count(schema, c.LOAD_LEDGER), bookkeeping.create_schema(schema)]
    for table, dims in (
        ("engagement_daily", ["event"]),
        ("experiment_daily", ["experiment_id", "variant", "event"]),
    ):
        out += [
            bookkeeping.day_rows(schema, table, dims, day),
            bookkeeping.late_delta_sums(schema, table, dims, day),
        ]
    out += [bookkeeping.day_status_since(schema, day), bookkeeping.touched_before(schema, AT)]
    out += [bookkeeping.assignments_before(schema, AT), bookkeeping.identity_links(schema)]
    out += [statement for _, statement in bookkeeping.prune(schema, AT, day)]
    return [*out, bookkeeping.applied_migrations(schema), bookkeeping.record_migration(schema, 7, "v7")]


@pytest.mark.parametrize("read", ["postgres", "redshift"])
def test_bookkeeping_statements_render_and_parse(read):
    for statement in bookkeeping_statements():
        text = render(statement)
        assert "{" not in SQL_LITERAL.sub("''", text), text  # no unfilled placeholders
        assert not isinstance(sqlglot.parse_one(text, read=read), sqlglot.exp.Command), text
        if read == "redshift":  # both dialects run them: nothing Redshift does not support
            assert problems(text) == [], text


class ScriptedRedshift(RecordingCursor):
    """A Redshift session for the day lock: which sessions are alive, who holds the day."""

    def __init__(self, live: set[int], holders: list[int]) -> None:
        super().__init__()
        self.live, self.holders = live, holders

    def fetchall(self):
        last = self.sent[-1]
        if "stv_sessions" in last:
            return [(pid,) for pid in sorted(self.live)]
        assert last.startswith('SELECT "holder"'), last
        return [(pid,) for pid in self.holders]


@pytest.mark.parametrize(
    ("live", "holders", "taken"),
    [(set(), [], True), ({7, 9}, [9], False), ({7}, [9], True)],
    ids=["free", "held-by-a-live-session", "held-by-a-crashed-run"],
)
def test_redshift_day_lock_is_a_row_owned_by_a_live_session(live, holders, taken):
    """Redshift has no advisory locks (PITFALLS): the nightly job's day lock is a row written
    under LOCK; a crashed run's row (its session gone) does not keep the day locked."""
    cur = ScriptedRedshift(live, holders)
    day = date(2026, 11, 19)
    assert redshift().acquire_day_lock(cur, "analytics", day) is taken
    assert cur.sent[1:3] == ["BEGIN", 'LOCK "analytics"."reprocess_locks"']
    assert cur.sent[-1] == ("COMMIT" if taken else "ROLLBACK")
    inserted = [s for s in cur.sent if s.startswith("INSERT")]
    row = "('2026-11-19'::date, PG_BACKEND_PID(), GETDATE())"
    assert inserted == ([f'INSERT INTO "analytics"."reprocess_locks" VALUES {row}'] if taken else [])
    for text in cur.sent:
        assert problems(text) == [], text  # the Redshift lint (AWS's unsupported lists, sqlglot)
    release = ScriptedRedshift(set(), [])
    redshift().release_day_lock(release, "analytics", day)
    mine = """"day" = '2026-11-19'::date AND "holder" = PG_BACKEND_PID()"""
    assert release.sent == [f'DELETE FROM "analytics"."reprocess_locks" WHERE {mine}']
    assert problems(release.sent[0]) == []


def test_the_upserts_of_parallel_loads_parse_as_postgresql_and_redshift_refuses_them():
    """Claimed loads run on PostgreSQL only (``dialects.upserts``): ON CONFLICT is on AWS's
    list of what Redshift refuses, so the Redshift dialect must never be given them. (The
    integration tier runs them all, the shared statements among them and the LOCK too.)"""
    from eventpipe.loader.dialects import upserts

    dialect = get_dialect("postgres")
    out = [
        upserts.free_objects("analytics", ["a", "b"]),
        upserts.ledger_claim("analytics", "events", ["a"], AT),
    ]
    out += [upserts.ledger_rows("analytics", [("a", 3)])]
    out += [upserts.freshness_upsert("analytics", "events", c.newest_staged(dialect, "events"), AT)]
    for table in TARGETS:
        out += merge_statements(dialect, "analytics", table, AT, keyed=True)
    texts = [render(statement) for statement in out]
    own = [t for t in texts if "ON CONFLICT" in t or "pg_try_advisory_xact_lock" in t or " AS l SET " in t]
    assert (
        len(own) == 3 + 1 + len(TARGETS) + 1
    )  # claim, try-locks, rows; freshness; a target each; identities
    for text in own:
        assert not isinstance(sqlglot.parse_one(text, read="postgres"), sqlglot.exp.Command), text
    assert all(problems(t) for t in own if "ON CONFLICT" in t)
