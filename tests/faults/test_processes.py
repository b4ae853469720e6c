"""Fault scenarios that crash, pause or duplicate the pipeline's own processes (1, 4-6, 8-10,
13), on the shared local stack with per-test topics, S3 prefix and warehouse schema (the
faults hit only this test's processes)."""

from __future__ import annotations

import signal
import time

import pytest

from eventpipe.settings import Settings
from tests.faults.checker import Result
from tests.faults.conftest import dump_logs, start_all
from tests.faults.load import OK, LoadGenerator

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


def assert_held(result: Result, pipe: object = None) -> None:
    if not result.passed and pipe is not None:
        dump_logs(pipe)  # type: ignore[arg-type]
    assert result.lost == 0, result.line()
    assert result.duplicated == 0, result.line()
    assert result.failed_stored == 0, result.line()
    assert result.final_equal is not False, result.line()


@pytest.mark.ci
def test_00_baseline_no_faults(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = start_all(pipeline_factory(shared))
    with LoadGenerator(pipe.ingest_url, count=1000, duration_s=10) as load:
        pass
    result = checker_for(pipe.settings, "0 baseline, no faults").check(load.outcomes)
    assert result.ok == result.sent, result.line()
    assert_held(result, pipe)


@pytest.mark.ci
def test_01_kill9_collector_under_load(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = start_all(pipeline_factory(shared))
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=25, concurrency=4) as load:
        for _ in range(2):
            load.wait_for_ok(load.outcomes.counts()[OK] + 300)
            pipe.kill("ingest")
            time.sleep(2)
            pipe.restart("ingest")
    result = checker_for(pipe.settings, "1 kill -9 collector x2 under load").check(load.outcomes)
    assert_held(result, pipe)


@pytest.mark.ci
def test_04_kill9_stream_worker(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = start_all(pipeline_factory(shared))
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=25) as load:
        load.wait_for_ok(800)
        pipe.kill("stream")
        time.sleep(3)
        pipe.restart("stream")
    result = checker_for(pipe.settings, "4 kill -9 stream worker").check(load.outcomes)
    assert result.ok == result.sent, result.line()
    assert_held(result, pipe)


def test_05_second_worker_then_kill_one(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = start_all(pipeline_factory(shared))
    with LoadGenerator(pipe.ingest_url, count=4000, duration_s=40) as load:
        load.wait_for_ok(600)
        pipe.add_worker("stream#2")  # rebalance: partitions split between two workers
        load.wait_for_ok(2000, timeout_s=40)
        pipe.kill("stream")  # rebalance again: the survivor takes every partition
    result = checker_for(pipe.settings, "5 add a 2nd worker, kill -9 the 1st").check(load.outcomes)
    assert_held(result, pipe)


def test_06_sigstop_worker_past_session_timeout(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = start_all(pipeline_factory(shared))
    pipe.add_worker("stream#2")
    with LoadGenerator(pipe.ingest_url, count=4000, duration_s=60) as load:
        load.wait_for_ok(600)
        pipe.signal("stream", signal.SIGSTOP)  # holds open cuts for its partitions
        time.sleep(45)  # > aiokafka's session timeout (10 s) and max poll interval: group evicts it
        pipe.signal("stream", signal.SIGCONT)  # it must not write or commit for lost partitions
    result = checker_for(pipe.settings, "6 SIGSTOP a worker 45 s, then SIGCONT").check(load.outcomes)
    assert_held(result, pipe)


@pytest.mark.ci
def test_08_kill_between_upload_and_commit(shared: Settings, pipeline_factory, checker_for) -> None:
    """Approximation: kill -9 right after the first batch notice of a cut appears, i.e.
    after the S3 upload and before (or around) the offset commit; repeated 3 times."""
    from tests.faults.notices import NoticeWatcher

    pipe = start_all(pipeline_factory(shared))
    watcher = NoticeWatcher(pipe.settings)
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=40) as load:
        for _ in range(3):
            watcher.wait_for_new(timeout_s=30)
            pipe.kill("stream")
            pipe.restart("stream")
    watcher.close()
    result = checker_for(pipe.settings, "8 kill -9 stream right after an upload notice x3").check(
        load.outcomes
    )
    assert_held(result, pipe)


@pytest.mark.ci
def test_09_kill9_loader_mid_load(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = start_all(pipeline_factory(shared))
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=30) as load:
        for _ in range(3):
            load.wait_for_ok(load.outcomes.counts()[OK] + 500, timeout_s=30)
            pipe.kill("loader")
            pipe.restart("loader")
    result = checker_for(pipe.settings, "9 kill -9 loader x3 mid-load").check(load.outcomes)
    assert_held(result, pipe)


@pytest.mark.parametrize("constraints", ["with_pk", "without_pk"])
def test_10_two_loaders_at_once(constraints: str, shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = start_all(pipeline_factory(shared), ("ingest", "stream", "loader"))
    if constraints == "without_pk":  # Redshift does not enforce primary keys: the loader must
        from tests.faults.warehouse import drop_primary_keys

        assert drop_primary_keys(pipe.settings) >= 5
    pipe.add_worker("loader#2")
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=25) as load:
        pass
    result = checker_for(pipe.settings, f"10 two loaders at once, {constraints}").check(load.outcomes)
    assert_held(result, pipe)


def test_13_client_retry_storm(shared: Settings, pipeline_factory, checker_for) -> None:
    """Every batch sent 3 times by 3 racing clients with the same messageIds, while the
    collector is killed once: each id must land exactly once."""
    from tests.faults.load import retry_storm

    pipe = start_all(pipeline_factory(shared))
    outcomes = retry_storm(pipe, count=2000, copies=3, kill_collector_after=600)
    result = checker_for(pipe.settings, "13 retry storm: 3 racing copies of every batch").check(outcomes)
    assert_held(result, pipe)


@pytest.mark.ci
def test_checker_sees_loss_duplicates_and_wrong_counts(
    shared: Settings, pipeline_factory, checker_for
) -> None:
    """The checker checks itself: tamper with a settled warehouse, every kind of damage shows."""
    import psycopg2
    from psycopg2 import sql

    from tests.faults.checker import compare, event_id_counts, truth, warehouse_aggregates, warehouse_events

    pipe = start_all(pipeline_factory(shared))
    with LoadGenerator(pipe.ingest_url, count=300, duration_s=3) as load:
        pass
    result = checker_for(pipe.settings, "checker self-test (untampered)").check(load.outcomes)
    assert_held(result, pipe)
    schema = pipe.settings.warehouse_schema
    conn = psycopg2.connect(pipe.settings.warehouse_dsn)
    with conn, conn.cursor() as cur:
        victim = sorted(load.outcomes.ids(OK))[0]
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE message_id = %s").format(sql.Identifier(schema, "events")), [victim]
        )
        cur.execute(
            sql.SQL("UPDATE {} SET event_count = event_count + 1 WHERE event = '*'").format(
                sql.Identifier(schema, "engagement_daily")
            )
        )
    conn.close()
    counts = event_id_counts(pipe.settings)
    assert victim not in counts
    diffs = compare(truth(warehouse_events(pipe.settings)), warehouse_aggregates(pipe.settings))
    assert any("engagement_daily" in d and "'*'" in d for d in diffs), diffs
