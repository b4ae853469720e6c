"""Every SQL statement a warehouse dialect emits, rendered without a server: what the
SQL unit tests and the Redshift lint (tests/unit/test_redshift_lint.py) go over."""

from __future__ import annotations

from datetime import UTC, date, datetime

from psycopg2 import extensions, sql

from eventpipe.loader import migrations
from eventpipe.loader.dialects import common as c
from eventpipe.loader.dialects import get_dialect, links
from eventpipe.loader.dialects.merges import ASSIGNMENT_ORDER, merge_statements
from eventpipe.loader.tables import AGGREGATES, TARGETS

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SHAPES = [*TARGETS, *(f"{t}:final" for t in AGGREGATES)]


def render(part: sql.Composable) -> str:
    """A Composed as text, as psycopg2 would send it (literals quoted by psycopg2 itself)."""
    if isinstance(part, sql.Composed):
        return "".join(render(p) for p in part.seq)
    if isinstance(part, sql.SQL):
        return part.string
    if isinstance(part, sql.Identifier):
        return ".".join('"' + s.replace('"', '""') + '"' for s in part.strings)
    if isinstance(part, sql.Literal):
        return extensions.adapt(part.wrapped).getquoted().decode()
    if isinstance(part, sql.Placeholder):  # a parameter: any literal stands for it in a parse
        return f"'{part.name}'"
    raise TypeError(type(part))


def all_statements(dialect) -> list[sql.Composable]:
    schema = "analytics"
    out = [*migrations.bootstrap_statements(dialect, schema)]
    for _, _, build in migrations.MIGRATIONS:
        out += build(dialect, schema)
    for table in TARGETS:
        out += [dialect.lock(schema, table), *dialect.create_stage(table)]
        out += merge_statements(dialect, schema, table, AT, keyed=False)
        out += c.freshness_update(schema, table, c.newest_staged(dialect, table), AT)
        out.append(c.freshness_of(schema, table))
    for shape in SHAPES:
        out += dialect.create_stage(shape)
        if dialect.name == "redshift":
            out += dialect.stage_statements(shape, [f"agg/{shape}/x.jsonl.gz"])
            out += dialect.stage_statements(shape, [f"agg/{shape}/x.jsonl.gz", f"agg/{shape}/y.jsonl.gz"])
    out += [c.keys_in(schema, c.LOAD_LEDGER, ["a", "b"]), c.ledger_insert(schema, [("a", "events", 3)], AT)]
    out += c.quarantine_insert(schema, "k", "events", "bad_json", "line 3: oops 'quoted'", AT)
    for table in AGGREGATES:
        day = date(2026, 11, 19)
        out += [c.delete_day(schema, table, day), c.insert_final(dialect, schema, table)]
        out += [*c.late_deltas_source(dialect, schema, table, day), c.merge_add(schema, table)]
    out += c.earliest_wins(dialect, schema, "experiment_assignments", ASSIGNMENT_ORDER)
    out += c.mark_day_final(schema, date(2026, 11, 19), date(2026, 11, 20), AT)
    out.append(links.retire_linked_assignments(schema, date(2026, 11, 20)))
    out += c.record_final_batches(schema, date(2026, 11, 19), ["agg/a", "agg/b", "agg/a"], chunk=1)
    out += c.record_watermark(schema, date(2026, 11, 19), 2, AT)
    out += dialect.drop_temps()
    return out


def redshift():
    return get_dialect("redshift", iam_role="arn:aws:iam::123456789012:role/loader", bucket="lake")


def redshift_statements() -> list[str]:
    """Every statement the Redshift dialect can emit, rendered: loads, migrations, day
    replacements, verify, identity links, the session's query group and the reports."""
    from eventpipe.loader.dialects import QUERY_GROUPS, checks, late_links, truth

    dialect = redshift()
    out = list(all_statements(dialect))
    out += truth.checks(dialect, "analytics", date(2026, 11, 19), stitched=True)
    out += truth.checks(dialect, "analytics", date(2026, 11, 19), stitched=False)
    out += [truth.day_state("analytics", date(2026, 11, 19)), links.winning_links("analytics")]
    out += [links.backfill_identities("analytics"), late_links.touch_linked_days(dialect, "analytics", AT)]
    out.append(checks.insert_result("analytics"))  # the data checks' record of a run
    out += dialect.report_views_lock()
    for group in QUERY_GROUPS:
        out += dialect.session_setup(group)
    out += report_queries("analytics", "redshift")
    return [render(getattr(s, "query", s)) for s in out]


def report_queries(schema: str, dialect: str) -> list[sql.Composable]:
    """The reports' queries (parameters as placeholders, as the CLI runs them) and views."""
    from eventpipe.reports import sqlbuild, views

    x, goal = sql.Placeholder("experiment"), sql.Placeholder("goal")
    out = [sqlbuild.variant_counts(schema, x, goal, key, dialect) for key in (sqlbuild.PERSON, sqlbuild.RAW)]
    out += [sqlbuild.experiment_known(schema, x, dialect), sqlbuild.multi_exposure(schema, x, dialect)]
    out += [sqlbuild.experiment_list(schema, dialect), sqlbuild.daily_users(schema, dialect)]
    from eventpipe.reports import statesql

    out += [statesql.has_table(dialect), statesql.newest_received_watermark(schema)]
    out += [statesql.newest_received(schema), statesql.ledger_summary(schema), statesql.final_days(schema)]
    return out + views.statements(schema, None, dialect)
