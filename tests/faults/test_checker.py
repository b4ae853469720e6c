"""The checker checks itself: ``check()`` on a settled run passes, and on the same run
tampered five ways it fails each way (every kind of damage moves its own counter)."""

from __future__ import annotations

import gzip

import orjson
import pytest
from psycopg2 import sql

from eventpipe.keys import raw_key
from eventpipe.settings import Settings
from eventpipe.timeutil import utcnow
from tests.support.faults.load import FAILED, OK, LoadGenerator
from tests.support.faults.verdicts import assert_held
from tests.support.faults.warehouse import drop_primary_keys

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


def execute(settings: Settings, statement: sql.Composable, args: list | None = None) -> None:
    import psycopg2

    conn = psycopg2.connect(settings.warehouse_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
    finally:
        conn.close()


@pytest.mark.ci
def test_checker_fails_on_each_kind_of_tampering(shared: Settings, s3, pipeline_factory, checker_for) -> None:
    pipe = pipeline_factory(shared).start_all()
    with LoadGenerator(pipe.ingest_url, count=400, duration_s=4, refused_every=3) as load:
        pass
    settings = pipe.settings
    # no reprocess: the rows stay the streamed ones (per raw id) that both checks compare
    untampered = checker_for(settings, "checker self-test: untampered").check(
        load.outcomes, reprocess_days=False
    )
    assert_held(untampered, pipe)

    events = sql.Identifier(settings.warehouse_schema, "events")
    deleted, copied, changed = sorted(load.outcomes.ids(OK))[:3]
    planted = sorted(load.outcomes.ids(FAILED))[0]
    execute(settings, sql.SQL("DELETE FROM {} WHERE message_id = %s").format(events), [deleted])
    assert drop_primary_keys(settings) >= 5  # as on Redshift: now a second row can go in
    execute(
        settings, sql.SQL("INSERT INTO {0} SELECT * FROM {0} WHERE message_id = %s").format(events), [copied]
    )
    execute(
        settings,
        sql.SQL("UPDATE {} SET properties = %s WHERE message_id = %s").format(events),
        ['{"tampered": true}', changed],
    )
    line = orjson.dumps({**load.outcomes.messages[planted], "receivedAt": utcnow().isoformat()})
    s3.put_object(
        Bucket=settings.s3_bucket,
        Key=settings.s3_prefix + raw_key(utcnow(), 7, 10**12),  # an offset no test stream reaches
        Body=gzip.compress(line + b"\n"),
    )
    execute(
        settings,
        sql.SQL("UPDATE {} SET event_count = event_count + 1 WHERE event = '*'").format(
            sql.Identifier(settings.warehouse_schema, "engagement_daily")
        ),
    )

    tampered = checker_for(settings, "checker self-test: tampered 5 ways (must fail)").check(
        load.outcomes, settle_s=20, reprocess_days=False
    )
    assert not tampered.passed, tampered.line()
    assert tampered.lost == 1, tampered.line()  # the deleted row
    assert tampered.duplicated == 1, tampered.line()  # the second row without a primary key
    assert tampered.fields_differing == 1, tampered.line()  # the changed properties
    assert tampered.failed_stored == 1, tampered.line()  # the refused event planted in raw/
    assert tampered.streamed_equal is False, tampered.line()  # the bumped count
    bumped = [m for m in tampered.mismatches if m.startswith("streamed engagement_daily(") and "'*')" in m]
    assert len(bumped) == 1, tampered.mismatches  # exactly the '*' row we bumped
