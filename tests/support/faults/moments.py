"""Evidence that a fault lands at its dangerous moment, not merely somewhere in the run.

- A request in flight when the collector dies: ``open_request`` sends a valid batch whose
  body arrives in two halves ``hold_s`` apart, so the kill certainly meets it mid-request.
- The stream killed between its upload and its offset commit: ``kill_after_upload`` kills
  the worker the moment a new raw object appears in S3; ``uncommitted_cuts``, read while
  the worker is dead (nothing moves), names the uploaded cuts the group had not committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
from kafka import KafkaAdminClient

from eventpipe.keys import parse_raw_key
from eventpipe.s3 import list_keys, s3_client
from eventpipe.settings import Settings
from tests.support.faults.load import UNKNOWN, Outcomes, classify, event_stream


def open_request(url: str, outcomes: Outcomes, run_id: str, hold_s: float = 1.5) -> threading.Thread:
    """Starts a batch request that stays open ``hold_s`` (half its body sent); its outcome
    goes to ``outcomes`` like any other. Join the thread after the fault."""
    events = event_stream(run_id)
    batch = [next(events) for _ in range(5)]
    body = orjson.dumps({"batch": batch})
    half = len(body) // 2

    def chunks() -> Iterator[bytes]:
        yield body[:half]
        time.sleep(hold_s)
        yield body[half:]

    def send() -> None:
        sent_at, wall = time.monotonic(), time.time()
        try:
            with httpx.Client(timeout=httpx.Timeout(30.0, connect=3.0)) as client:
                response = client.post(
                    f"{url}/v1/batch",
                    content=chunks(),
                    headers={"Content-Type": "application/json"},
                    auth=("dev-write-key", ""),
                )
        except httpx.TransportError as exc:
            outcomes.record(
                batch, UNKNOWN, f"in-flight {type(exc).__name__}", sent_at, wall=(wall, time.time())
            )
            return
        received = response.json().get("receivedAt") if response.is_success else None
        outcomes.record(
            batch, classify(response.status_code), f"in-flight {response.status_code}", sent_at,
            received_at=received, wall=(wall, time.time()),
        )  # fmt: skip

    thread = threading.Thread(target=send, name="open-request", daemon=True)
    thread.start()
    time.sleep(0.3)  # the first half is on the wire: the request is in flight
    return thread


def raw_objects(settings: Settings) -> set[str]:
    client = s3_client(settings)
    return {o["Key"] for o in list_keys(client, settings.s3_bucket, settings.s3_prefix + "raw/events/")}


def wait_for_new_raw(settings: Settings, known: set[str], timeout_s: float = 30.0) -> str:
    """Polls the raw archive until an object not in ``known`` appears (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = raw_objects(settings) - known
        if fresh:
            return sorted(fresh)[0]
        time.sleep(0.02)
    raise AssertionError(f"no new raw object within {timeout_s}s")


def committed_offsets(settings: Settings) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets({settings.stream_app_id: None})[settings.stream_app_id]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.events_topic}


def uncommitted_cuts(settings: Settings) -> list[dict[str, Any]]:
    """Raw objects (uploaded cuts) at or beyond their partition's committed offset."""
    committed = committed_offsets(settings)
    found = []
    for key in raw_objects(settings):
        parsed = parse_raw_key(key)
        if parsed is None:
            continue
        _, _, partition, first = parsed
        if first >= committed.get(partition, 0):
            found.append({"partition": partition, "first": first, "committed": committed.get(partition)})
    return found


def kill_after_upload(pipe: Any, settings: Settings, known: set[str]) -> str:
    """Kills the stream worker -9 as soon as a new raw object is in S3; returns the
    evidence: whether an uploaded cut was left uncommitted at the kill."""
    key = wait_for_new_raw(settings, known)
    pipe.kill("stream")
    known |= raw_objects(settings)
    cuts = uncommitted_cuts(settings)
    if cuts:
        return f"killed between upload and commit: {len(cuts)} uploaded cut(s) uncommitted, e.g. {cuts[0]}"
    return f"killed after the commit of {key.rsplit('/', 1)[-1]} (upload and commit both done)"
