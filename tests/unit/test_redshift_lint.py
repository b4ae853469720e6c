"""Every statement the Redshift dialect can emit passes the Redshift lint: sqlglot's Redshift
dialect parses it, and it uses nothing from AWS's lists of unsupported PostgreSQL functions,
features and data types (services/loader/dialects/redshift_unsupported.yaml). The lint itself
is checked on statements Redshift refuses, so it cannot pass by seeing nothing."""

from __future__ import annotations

import pytest

from eventpipe.loader.dialects import get_dialect
from eventpipe.loader.dialects.redshift_lint import problems, unsupported
from tests.support.dialect_sql import all_statements, redshift_statements, render


def test_every_redshift_statement_passes_the_lint():
    statements = redshift_statements()
    assert len(statements) > 90
    failing = {s: found for s in statements if (found := problems(s))}
    assert failing == {}


REFUSED = {  # PostgreSQL that Redshift refuses -> what the lint must name
    "SELECT pg_try_advisory_lock(1, 2)": "Advisory lock functions",
    "SELECT pg_advisory_xact_lock(7)": "Advisory lock functions",
    'INSERT INTO "t" ("a") VALUES (1) ON CONFLICT ("a") DO NOTHING': "ON CONFLICT",
    'SELECT DISTINCT ON ("a") "a", "b" FROM "t" ORDER BY "a", "b"': "DISTINCT ON",
    'SELECT array_agg(DISTINCT "v" ORDER BY "v") FROM "t"': "Aggregate functions",
    'SELECT string_agg("v", \',\') FROM "t"': "Aggregate functions",
    "SELECT * FROM generate_series(1, 3)": "Set returning functions",
    'SELECT "p" ->> \'k\' FROM "t"': "jsonb operators",
    'SELECT jsonb_typeof("p") FROM "t"': "json/jsonb functions",
    'CREATE TABLE "t" ("p" JSONB, "id" UUID)': "JSON",
    'CREATE TABLE "t" ("id" BIGSERIAL)': "SERIAL",
    "SELECT to_regclass(format('%I.%I', 's', 't'))": "System catalog information functions",
    'SELECT "a" FROM "t" WHERE "a" IS DISTINCT FROM "b"': "IS DISTINCT FROM",
    'CREATE INDEX "i" ON "t" ("a")': "Indexes",
    "CREATE FUNCTION f(x text) RETURNS TABLE (v text) LANGUAGE sql STABLE AS 'SELECT 1'": "Table functions",
    'SELECT "a" FROM (VALUES (1), (2)) AS v ("a")': "VALUES list",
}


@pytest.mark.parametrize(("statement", "named"), sorted(REFUSED.items()))
def test_the_lint_refuses_what_redshift_refuses(statement, named):
    found = problems(statement)
    assert any(named in p for p in found), found


def test_names_in_literals_and_identifiers_are_data_not_sql():
    assert problems('SELECT "uuid", "jsonb", \'generate_series(1)\' FROM "format"') == []


def test_the_postgres_dialect_would_fail_it():
    """The lint sees the differences the two dialects exist for (jsonb, ON CONFLICT, indexes)."""
    failing = [render(s) for s in all_statements(get_dialect("postgres")) if problems(render(s))]
    assert len(failing) >= 5


def test_the_lists_keep_their_sources():
    lists = unsupported()
    assert set(lists.sources) == {"functions", "features", "data_types"}
    assert all(url.startswith("https://docs.aws.amazon.com/redshift/") for url in lists.sources.values())
    assert "Advisory lock functions" in lists.functions and "UUID" in lists.data_types


# builders the Redshift dialect's SQL comes from; a new public one must be in redshift_statements()
SQL_MODULES = (
    "eventpipe.loader.dialects.common",
    "eventpipe.loader.dialects.links",
    "eventpipe.loader.dialects.late_links",
    "eventpipe.loader.dialects.merges",
    "eventpipe.loader.dialects.truth",
    "eventpipe.loader.dialects.checks",
    "eventpipe.loader.dialects.models",
    "eventpipe.loader.dialects.redshift",
    "eventpipe.loader.dialects.redshift_copy",
    "eventpipe.reports.sqlbuild",
    "eventpipe.reports.statesql",
)
NOT_SQL = {  # what these modules define that emits no statement of its own
    "manifest",  # the COPY manifest's JSON body (S3), not SQL
    "manifest_key",  # its S3 key
    "one_copy_per_group",  # which COPYs a group is staged with (pure)
    "copies",
    "rows_per_object",  # the per-file counts attributed to the objects (pure)
    "written_manifest",  # I/O: S3 put + delete
    "RedshiftDialect.stage",  # I/O: runs stage_statements(), which are linted
    "RedshiftDialect.is_retryable",  # error classification
    "RedshiftDialect.is_data_error",
    "RedshiftDialect.data_error_reason",
    "RedshiftDialect.keyed",  # a capability (False: loads take turns on the ledger's LOCK)
    # I/O (the nightly job's day lock, a lock row): every statement it sends is linted in
    # tests/unit/test_loader_sql.py::test_redshift_day_lock_is_a_row_owned_by_a_live_session
    "RedshiftDialect.acquire_day_lock",
    "RedshiftDialect.release_day_lock",
}


def test_the_lint_sees_every_public_sql_builder():
    """``redshift_statements()`` calls every public function and method of the modules the
    Redshift dialect's SQL is built in, so "every statement" stays every statement."""
    import importlib
    import inspect
    import sys

    called: set[tuple[str, str]] = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_globals.get("__name__") in SQL_MODULES:
            called.add((frame.f_globals["__name__"], frame.f_code.co_qualname))

    sys.setprofile(profile)
    try:
        redshift_statements()
    finally:
        sys.setprofile(None)
    missing = []
    for name in SQL_MODULES:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            members = [attr] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                members = [
                    f"{attr}.{m}" for m, f in vars(obj).items() if inspect.isfunction(f) and m[0] != "_"
                ]
            missing += [(name, m) for m in members if m not in NOT_SQL and (name, m) not in called]
    assert missing == []
