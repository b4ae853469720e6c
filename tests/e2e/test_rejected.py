"""Failed events are never silently gone: the collector's dead letters reach S3 rejected/
exactly once (also when the archiver reads its topic again from the start), `eventpipe
rejected` lists them, and a fixed replay stores each event once however often it runs."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from eventpipe.s3 import iter_gzip_lines, list_keys
from eventpipe.timeutil import format_ts, utcnow
from tests.support.pipeline import EVENTPIPE, child_env, running_pipeline
from tests.support.waiting import wait_until
from tests.support.warehouse import events_of_users

pytestmark = pytest.mark.e2e
AUTH = ("dev-write-key", "")
# two days before the run: an event with its own past time, which the replay must keep
T0 = format_ts((utcnow() - timedelta(days=2)).replace(microsecond=0))

GOOD = [{"type": "track", "userId": f"ok-{i}", "event": "Signed Up", "messageId": f"m{i}"} for i in range(3)]
BAD = [
    {"type": "track", "anonymousId": None, "event": "Order Completed", "messageId": "bad-no-user",
     "properties": {"revenue": 10}, "timestamp": T0},
    {"type": "track", "userId": "late-1", "properties": {"plan": "pro"}},  # no event name, no messageId
]  # fmt: skip
FIX = """
def fix(message, rejected):
    if rejected["reason"] == "missing_user":
        message["userId"] = "fixed-user"
    if rejected["reason"] == "missing_event":
        message["event"] = "Plan Chosen"
    return message
"""


def archived_lines(s3, settings) -> dict[str, list[tuple[int, int]]]:
    """Per rejected/ingest object: the (partition, offset) of each line, read raw (no dedup)."""
    out = {}
    for obj in list_keys(s3, settings.s3_bucket, settings.s3_prefix + "rejected/ingest/"):
        body = s3.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])["Body"].read()
        lines = [json.loads(line) for line in iter_gzip_lines(body)]
        out[obj["Key"]] = [(line["partition"], line["offset"]) for line in lines]
    return out


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = child_env(settings)
    command = [EVENTPIPE, "rejected", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    return done


def rewind_archiver(settings) -> None:
    """What a crash between PUT and commit leaves: the archiver's group back at offset 0."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.stream_app_id}-deadletters",
        enable_auto_commit=False,
    )
    try:
        parts = [TopicPartition(settings.deadletter_topic, p) for p in consumer.partitions_for_topic(
            settings.deadletter_topic)]  # fmt: skip
        consumer.assign(parts)
        consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in parts})
    finally:
        consumer.close()


def test_dead_letters_archived_once_listed_and_replayed_once(topics, s3, pg_schema, tmp_path: Path):
    with running_pipeline(topics, tmp_path) as pipe:
        response = httpx.post(f"{pipe.ingest_url}/v1/batch", json={"batch": GOOD + BAD}, auth=AUTH)
        assert response.status_code == 200 and response.json()["accepted"] == 3
        archived = wait_until(lambda: sum(map(len, archived_lines(s3, topics).values())) == 2
                            and archived_lines(s3, topics), 60, "both dead letters in rejected/")  # fmt: skip

        # read again from the start (a crash before the commit): the same objects, no second copy
        pipe.stop("stream")
        rewind_archiver(topics)
        pipe.restart("stream")
        time.sleep(3 * topics.flush_interval_s)
        assert archived_lines(s3, topics) == archived

        listed = json.loads(cli(pipe.settings, "list", "--format", "json").stdout)
        assert sorted(i["reason"] for i in listed) == ["missing_event", "missing_user"]
        assert {i["source"] for i in listed} == {"dev"}
        by_reason = {i["reason"]: i for i in listed}
        assert by_reason["missing_user"]["message"] == BAD[0]  # the message exactly as sent
        only = json.loads(cli(pipe.settings, "list", "--format", "json", "--reason", "missing_event").stdout)
        assert [i["message"] for i in only] == [BAD[1]]
        shown = json.loads(cli(pipe.settings, "show", by_reason["missing_user"]["id"]).stdout)
        assert shown[0]["detail"] == "userId or anonymousId is required"

        unfixed = json.loads(cli(pipe.settings, "replay", "--dry-run").stdout)
        assert unfixed["to_send"] == 0 and len(unfixed["still_invalid"]) == 2  # not sent: no new dead letters

        script = tmp_path / "fix.py"
        script.write_text(FIX)
        for _ in range(2):  # a replay twice stores once
            args = ("replay", "--fix-script", str(script), "--collector", pipe.ingest_url)
            replayed = json.loads(cli(pipe.settings, *args).stdout)
            assert replayed["accepted"] == 2 and replayed["refused_by_collector"] == []

        users = ["fixed-user", "late-1", "ok-0", "ok-1", "ok-2"]
        dsn, schema = topics.warehouse_dsn, topics.warehouse_schema
        wait_until(
            lambda: len(events_of_users(dsn, schema, users)) >= 5, 90, "the replayed events in `events`"
        )
        time.sleep(3 * topics.flush_interval_s)  # a second copy would arrive by now
        rows = {r["userId"]: r for r in events_of_users(dsn, schema, users)}
        assert len(events_of_users(dsn, schema, users)) == 5
        assert rows["fixed-user"]["messageId"] == "bad-no-user"  # the fixed copy keeps its messageId
        assert rows["fixed-user"]["event"] == "Order Completed" and rows["fixed-user"]["properties"] == {
            "revenue": 10
        }
        assert format_ts(rows["fixed-user"]["timestamp"]) == T0  # its own time, not the replay's
        assert rows["late-1"]["event"] == "Plan Chosen"
        assert rows["late-1"]["messageId"].startswith("rj-ingest-")  # deterministic: one row
        # no new dead letter came from the replays
        assert archived_lines(s3, topics) == archived
