"""Fault scenarios that crash, pause or duplicate the pipeline's own processes (1, 4-6, 8-10,
13), on the shared local stack with per-test topics, S3 prefix and warehouse schema (the
faults hit only this test's processes)."""

from __future__ import annotations

import signal
import time

import pytest

from eventpipe.settings import Settings
from tests.support.faults.load import OK, LoadGenerator
from tests.support.faults.verdicts import assert_all_answered, assert_held

COMMIT_DELAY_S = 0.5  # scenario 8's upload-to-commit window (a failpoint of the stream worker)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


@pytest.mark.ci
def test_00_baseline_no_faults(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = pipeline_factory(shared).start_all()
    with LoadGenerator(pipe.ingest_url, count=1000, duration_s=10) as load:
        pass
    result = checker_for(pipe.settings, "0 baseline, no faults").check(load.outcomes)
    assert_all_answered(result)
    assert_held(result, pipe)


@pytest.mark.ci
def test_01_kill9_collector_under_load(shared: Settings, pipeline_factory, checker_for) -> None:
    from tests.support.faults.moments import open_request

    pipe = pipeline_factory(shared).start_all()
    evidence = []
    # two outages of 2 s plus a restart (seconds on a loaded machine): a third may fail
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=40, concurrency=4, min_ok_share=0.3) as load:
        for n in range(2):
            load.wait_for_ok(load.outcomes.counts()[OK] + 300)
            held = open_request(pipe.ingest_url, load.outcomes, f"{load.run_id}h{n}")
            killed_at = time.monotonic()
            pipe.kill("ingest")
            time.sleep(2)
            pipe.restart("ingest")
            held.join(timeout=40)  # its second half met a dead connection: answered unknown
            evidence.append(f"kill {n + 1}: in flight {dict(load.outcomes.in_flight_at(killed_at))}")
    result = checker_for(pipe.settings, "1 kill -9 collector x2 under load").check(
        load.outcomes, evidence=evidence
    )
    assert_held(result, pipe)
    held = {status: n for status, n in load.outcomes.statuses.items() if status.startswith("in-flight")}
    assert sum(held.values()) == 2, held  # both held requests were answered or cut
    assert not any(status.startswith("in-flight 2") for status in held), f"a kill missed its request: {held}"


@pytest.mark.ci
def test_04_kill9_stream_worker(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = pipeline_factory(shared).start_all()
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=25) as load:
        load.wait_for_ok(800)
        pipe.kill("stream")
        time.sleep(3)
        pipe.restart("stream")
    result = checker_for(pipe.settings, "4 kill -9 stream worker").check(load.outcomes)
    assert_all_answered(result)
    assert_held(result, pipe)


def test_05_second_worker_then_kill_one(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = pipeline_factory(shared).start_all()
    with LoadGenerator(pipe.ingest_url, count=4000, duration_s=40) as load:
        load.wait_for_ok(600)
        pipe.add_worker("stream#2")  # rebalance: partitions split between two workers
        load.wait_for_ok(2000, timeout_s=40)
        pipe.kill("stream")  # rebalance again: the survivor takes every partition
    result = checker_for(pipe.settings, "5 add a 2nd worker, kill -9 the 1st").check(load.outcomes)
    assert_held(result, pipe)


def test_06_sigstop_worker_past_session_timeout(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = pipeline_factory(shared).start_all()
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
    """kill -9 the moment a new raw object is in S3: the cut is uploaded, and its commit
    (after the aggregate PUTs and the changelog flush) is usually not done yet. Read while
    the worker is dead, the group's committed offsets say whether it was; up to 6 kills,
    until 3 landed between upload and commit. The worker waits ``COMMIT_DELAY_S`` before each
    commit (the ``fault_commit_delay_s`` failpoint): since the changelog goes out beside the
    PUTs, upload-to-commit is too short for a poll of S3 to land a kill in it reliably."""
    from tests.support.faults.moments import kill_after_upload, raw_objects

    pipe = pipeline_factory(shared)
    pipe.overrides["stream"] = {"fault_commit_delay_s": COMMIT_DELAY_S}
    pipe.start_all()
    evidence: list[str] = []
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=45) as load:
        known = raw_objects(pipe.settings)
        end_of_load = load.started + load.duration_s - 10  # leave the last kill traffic to cut
        while len(evidence) < 6 and time.monotonic() < end_of_load:
            evidence.append(kill_after_upload(pipe, pipe.settings, known))
            pipe.restart("stream")
            if sum(e.startswith("killed between") for e in evidence) == 3:
                break
    result = checker_for(pipe.settings, "8 kill -9 stream between upload and commit").check(
        load.outcomes, evidence=evidence
    )
    assert_held(result, pipe)
    assert any(e.startswith("killed between") for e in evidence), evidence


@pytest.mark.ci
def test_09_kill9_loader_mid_load(shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = pipeline_factory(shared).start_all()
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=30) as load:
        for _ in range(3):
            load.wait_for_ok(load.outcomes.counts()[OK] + 500, timeout_s=30)
            pipe.kill("loader")
            pipe.restart("loader")
    result = checker_for(pipe.settings, "9 kill -9 loader x3 mid-load").check(load.outcomes)
    assert_held(result, pipe)


@pytest.mark.parametrize("constraints", ["with_pk", "without_pk"])
def test_10_two_loaders_at_once(constraints: str, shared: Settings, pipeline_factory, checker_for) -> None:
    pipe = pipeline_factory(shared).start_all()
    if constraints == "without_pk":  # Redshift does not enforce primary keys: the loader must
        from tests.support.faults.warehouse import drop_primary_keys

        assert drop_primary_keys(pipe.settings) >= 5
    pipe.add_worker("loader#2")
    with LoadGenerator(pipe.ingest_url, count=3000, duration_s=25) as load:
        pass
    result = checker_for(pipe.settings, f"10 two loaders at once, {constraints}").check(load.outcomes)
    assert_held(result, pipe)


def test_13_client_retry_storm(shared: Settings, pipeline_factory, checker_for) -> None:
    """Every batch sent 3 times by 3 racing clients with the same messageIds, while the
    collector is killed once: each id must land exactly once."""
    from tests.support.faults.storm import retry_storm

    pipe = pipeline_factory(shared).start_all()
    outcomes = retry_storm(pipe, count=2000, copies=3, kill_collector_after=600)
    result = checker_for(pipe.settings, "13 retry storm: 3 racing copies of every batch").check(
        outcomes, in_order=False
    )
    assert_held(result, pipe, refused=False)
