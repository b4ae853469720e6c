# ruff: noqa: E501  (the battery is a table: one hostile input per line)
"""The bad-input battery against a real collector process (``eventpipe ingest``).

Every hostile body gets its documented 4xx and a JSON error, the process's resident memory
stays bounded, and nothing reaches Kafka (neither the events nor the dead-letter topic:
their end offsets are read back). schemathesis fuzzes the OpenAPI spec and must find no
5xx; one write key flooding gets 429s while another is unaffected.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from eventpipe.settings import Settings
from tests.support.pipeline import ROOT, Pipeline, pipeline_settings

pytestmark = [pytest.mark.faults, pytest.mark.ci, pytest.mark.timeout(600)]

GOOD = {"userId": "u-1", "event": "Signed Up", "properties": {"plan": "pro"}}


def vm_kb(pid: int, field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of a process, in kB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def end_offsets(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def nested(depth: int) -> bytes:
    return b'{"userId":"u","event":"e","properties":{"x":' + b"[" * depth + b"]" * depth + b"}}"


def bomb(decompressed_mb: int) -> bytes:
    head = b'{"userId":"u","event":"e","properties":{"pad":"'
    z = gzip.compress(head + b" " * (decompressed_mb * 1024 * 1024) + b'"}}', compresslevel=9)
    return z


# (name, method, path, body, headers, expected status)
JSON = {"Content-Type": "application/json"}
BATTERY: list[tuple[str, str, str, bytes | None, dict[str, str], set[int]]] = [
    ("deep nesting (10,000)", "POST", "/v1/track", nested(10_000), JSON, {400}),
    ("deep nesting (33)", "POST", "/v1/track", nested(33), JSON, {400}),
    ("10,000-digit integer", "POST", "/v1/track",
     b'{"userId":"u","event":"e","properties":{"n":' + b"9" * 10_000 + b"}}", JSON, {400}),
    ("10,000-digit float", "POST", "/v1/track",
     b'{"userId":"u","event":"e","properties":{"n":0.' + b"1" * 10_000 + b"}}", JSON, {400}),
    ("huge exponent", "POST", "/v1/track", b'{"userId":"u","event":"e","properties":{"n":1e999}}', JSON, {400}),
    ("NaN", "POST", "/v1/track", b'{"userId":"u","event":"e","properties":{"n":NaN}}', JSON, {400}),
    ("Infinity", "POST", "/v1/track", b'{"userId":"u","event":"e","properties":{"n":-Infinity}}', JSON, {400}),
    ("duplicate keys", "POST", "/v1/track", b'{"userId":"u","userId":"v","event":"e"}', JSON, {400}),
    ("duplicate nested keys", "POST", "/v1/track",
     b'{"userId":"u","event":"e","properties":{"a":1,"a":2}}', JSON, {400}),
    ("invalid UTF-8", "POST", "/v1/track", b'{"userId":"u\xff\xfe","event":"e"}', JSON, {400}),
    ("overlong UTF-8", "POST", "/v1/track", b'{"userId":"\xc0\xaf","event":"e"}', JSON, {400}),
    ("lone surrogate", "POST", "/v1/track", b'{"userId":"u","event":"\\ud800"}', JSON, {400}),
    ("lone low surrogate in key", "POST", "/v1/track",
     b'{"userId":"u","event":"e","properties":{"\\udc00":1}}', JSON, {400}),
    ("oversized body (600 KB)", "POST", "/v1/track",
     json.dumps({**GOOD, "properties": {"pad": "x" * 600_000}}).encode(), JSON, {413}),
    ("oversized event (40 KB)", "POST", "/v1/track",
     json.dumps({**GOOD, "properties": {"pad": "x" * 40_000}}).encode(), JSON, {413}),
    ("gzip bomb (100 MB inflated)", "POST", "/v1/track", bomb(100), {**JSON, "Content-Encoding": "gzip"}, {413}),
    ("truncated gzip", "POST", "/v1/track", gzip.compress(json.dumps(GOOD).encode())[:-8],
     {**JSON, "Content-Encoding": "gzip"}, {400}),
    ("not gzip at all", "POST", "/v1/track", b"plain", {**JSON, "Content-Encoding": "gzip"}, {400}),
    ("unknown encoding", "POST", "/v1/track", json.dumps(GOOD).encode(), {**JSON, "Content-Encoding": "br"}, {400}),
    ("amplification: 2,500 events + 30 KB batch context (457 B gzipped)", "POST", "/v1/batch",
     gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2500,
                               "context": {"pad": "x" * 30_000}}).encode()), {**JSON, "Content-Encoding": "gzip"}, {413}),
    ("amplification: 2,500 events + 7 KB batch context", "POST", "/v1/batch",
     gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2500,
                               "context": {"pad": "x" * 7_000}}).encode()), {**JSON, "Content-Encoding": "gzip"}, {413}),
    ("10,000-event batch", "POST", "/v1/batch",
     json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e"}] * 10_000}).encode(), JSON, {400, 413}),
    ("empty batch", "POST", "/v1/batch", b'{"batch":[]}', JSON, {400}),
    ("batch not a list", "POST", "/v1/batch", b'{"batch":{"a":1}}', JSON, {400}),
    ("batch of invalid events", "POST", "/v1/batch", b'{"batch":[{"type":"track"},{"type":"nope"}]}', JSON, {400}),
    ("missing user ids", "POST", "/v1/track", b'{"event":"e"}', JSON, {400}),
    ("missing event name", "POST", "/v1/track", b'{"userId":"u"}', JSON, {400}),
    ("userId an object", "POST", "/v1/track", b'{"userId":{"a":1},"event":"e"}', JSON, {400}),
    ("properties a list", "POST", "/v1/track", b'{"userId":"u","event":"e","properties":[1]}', JSON, {400}),
    ("timestamp garbage", "POST", "/v1/track", b'{"userId":"u","event":"e","timestamp":"yesterday"}', JSON, {400}),
    ("body a JSON array", "POST", "/v1/track", b"[1,2,3]", JSON, {400}),
    ("body a JSON string", "POST", "/v1/track", b'"hello"', JSON, {400}),
    ("empty body", "POST", "/v1/track", b"", JSON, {400}),
    ("not JSON", "POST", "/v1/track", b"userId=u&event=e", {"Content-Type": "text/plain"}, {400}),
    ("trailing garbage", "POST", "/v1/track", json.dumps(GOOD).encode() + b"}", JSON, {400}),
    ("pixel: bad base64", "GET", "/v1/pixel/track?data=%%%", None, {}, {400}),
    ("pixel: unknown type", "GET", "/v1/pixel/nope?data=e30", None, {}, {400}),
    ("wrong method GET", "GET", "/v1/track", None, {}, {405}),
    ("wrong method PUT", "PUT", "/v1/batch", json.dumps(GOOD).encode(), JSON, {405}),
    ("wrong method DELETE", "DELETE", "/v1/identify", None, {}, {405}),
    ("wrong path", "POST", "/v1/nope", json.dumps(GOOD).encode(), JSON, {404}),
    ("wrong version", "POST", "/v2/track", json.dumps(GOOD).encode(), JSON, {404}),
    ("path traversal", "POST", "/v1/../../etc/passwd", json.dumps(GOOD).encode(), JSON, {404}),
]  # fmt: skip
AUTH_BATTERY = [
    ("wrong write key", ("nope", ""), {401}),
    ("missing write key", None, {401}),
    ("key as password only", ("", "dev-write-key"), {401}),
    ("prefix of the key", ("dev-write", ""), {401}),
]


@pytest.fixture
def collector(shared: Settings, tmp_path: Path):
    pipe = Pipeline(pipeline_settings(shared), tmp_path)
    pipe.start("ingest")
    yield pipe
    pipe.stop_all()


def test_battery_gets_4xx_bounded_memory_nothing_in_kafka(collector: Pipeline) -> None:
    settings, url = collector.settings, collector.ingest_url
    pid = collector.pid("ingest")
    auth = ("dev-write-key", "")
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(3):  # warm up: imports, producer connection, first allocations
            http.post("/v1/track", content=b"{}", headers=JSON, auth=auth)
        rss_before = vm_kb(pid, "VmRSS")
        wrong: list[str] = []
        for _ in range(5):  # repeated: a leak would show as growth
            for name, method, path, body, headers, expected in BATTERY:
                response = http.request(method, path, content=body, headers=headers, auth=auth)
                if response.status_code not in expected:
                    wrong.append(f"{name}: {response.status_code} {response.text[:200]}")
                elif response.headers.get("content-type", "").startswith("application/json"):
                    assert response.json().get("success") is False or "detail" in response.json(), name
            for name, key, expected in AUTH_BATTERY:
                response = http.post("/v1/track", json=GOOD, auth=key)
                if response.status_code not in expected:
                    wrong.append(f"{name}: {response.status_code} {response.text[:200]}")
        rss_after, rss_peak = vm_kb(pid, "VmRSS"), vm_kb(pid, "VmHWM")
        assert http.get("/healthz").status_code == 200
        assert not wrong, "\n".join(sorted(set(wrong)))
        # the collector still works, and that one event is the only thing in Kafka
        assert http.post("/v1/track", json=GOOD, auth=auth).status_code == 200
    growth_mb, peak_mb = (rss_after - rss_before) / 1024, (rss_peak - rss_before) / 1024
    print(
        f"RSS before {rss_before / 1024:.0f} MB, after {rss_after / 1024:.0f} MB, peak {rss_peak / 1024:.0f} MB"
    )
    assert growth_mb < 40, f"RSS grew {growth_mb:.0f} MB over the battery"
    assert peak_mb < 80, f"RSS peaked {peak_mb:.0f} MB above the start"
    assert end_offsets(settings, settings.events_topic) == 1
    assert end_offsets(settings, settings.deadletter_topic) == 0


def test_schemathesis_finds_no_5xx(collector: Pipeline, tmp_path: Path) -> None:
    """Property-based requests from the collector's own OpenAPI spec: no operation answers 5xx.
    The hooks put lone surrogates and calendar-edge datetimes into the bodies (tests/support/hostile.py)."""
    url = collector.ingest_url
    report = tmp_path / "schemathesis.txt"
    hostile_log = tmp_path / "hostile.log"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(ROOT / "tests" / "support" / "faults" / "schemathesis_hooks.py"),
        "EVENTPIPE_HOSTILE_LOG": str(hostile_log),
    }
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "schemathesis"), "run", f"{url}/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "8",
            "--request-timeout", "20", "--header", "Authorization: Basic ZGV2LXdyaXRlLWtleTo=",
            "--phases", "examples,coverage,fuzzing",
        ],
        capture_output=True, text=True, timeout=420, cwd=tmp_path, env=env,
    )  # fmt: skip
    report.write_text(proc.stdout + proc.stderr)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed\b", proc.stdout), proc.stdout[-3000:]  # it really generated cases
    sent = len(hostile_log.read_text().splitlines()) if hostile_log.exists() else 0
    print(f"bodies with lone surrogates sent: {sent}")
    assert sent >= 10, "the hostile hooks did not reach the requests"


def test_flooding_key_gets_429_other_key_unaffected(shared: Settings, tmp_path: Path) -> None:
    limited = shared.model_copy(
        update={"write_keys": "k1:one,k2:two", "rate_limit_per_s": 100.0, "rate_limit_burst": 200.0}
    )
    pipe = Pipeline(pipeline_settings(limited), tmp_path)
    pipe.start("ingest")
    statuses: dict[str, Counter] = {"k1": Counter(), "k2": Counter()}
    accepted = Counter()
    retry_after: list[str] = []
    stop = threading.Event()

    def flood() -> None:  # k1: 20-event batches as fast as 2 threads go, ~10x its rate
        with httpx.Client(base_url=pipe.ingest_url, timeout=15) as http:
            while not stop.is_set():
                batch = {"batch": [{"type": "track", "userId": "f", "event": "flood"}] * 20}
                r = http.post("/v1/batch", json=batch, auth=("k1", ""))
                statuses["k1"][r.status_code] += 1
                if r.status_code == 200:
                    accepted["k1"] += 20
                elif r.status_code == 429:
                    retry_after.append(r.headers.get("retry-after", ""))

    def steady() -> None:  # k2: 20 events/s, well under its own 100/s
        with httpx.Client(base_url=pipe.ingest_url, timeout=15) as http:
            while not stop.is_set():
                r = http.post("/v1/batch", json={"batch": [{"type": "track", "userId": "s", "event": "ok"}] * 4},
                              auth=("k2", ""))  # fmt: skip
                statuses["k2"][r.status_code] += 1
                accepted["k2"] += 4 if r.status_code == 200 else 0
                time.sleep(0.2)

    try:
        threads = [threading.Thread(target=f, daemon=True) for f in (flood, flood, steady)]
        for t in threads:
            t.start()
        time.sleep(10)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        pipe.stop_all()
    print(statuses, accepted)
    assert statuses["k1"][429] > 0, statuses
    assert all(v.isdigit() and int(v) >= 1 for v in retry_after), set(retry_after)
    # k1 got about its rate: burst + 10 s x 100/s (+ slack for timing)
    assert accepted["k1"] <= 200 + 100 * 12, accepted
    assert set(statuses["k2"]) == {200}, statuses
    assert statuses["k2"][200] >= 30
    # a 429 stored nothing: Kafka holds exactly the accepted events
    assert end_offsets(limited, limited.events_topic) == accepted["k1"] + accepted["k2"]


OUT_OF_RANGE_TIMES = [
    {"timestamp": "9999-12-31T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"},  # events.py corrected_timestamp
    {"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
    {"timestamp": "9999-12-31T23:59:59-12:00"},  # timeutil.parse_ts astimezone
    {"timestamp": "0001-01-01T00:00:00+14:00"},
]


def test_out_of_range_timestamps_are_400(collector: Pipeline) -> None:
    def status(body: dict) -> int | str:
        with httpx.Client(base_url=collector.ingest_url, timeout=30) as http:  # a 500 drops the connection
            try:
                return http.post(f"/v1/{'batch' if 'batch' in body else 'track'}", json=body,
                                 auth=("dev-write-key", "")).status_code  # fmt: skip
            except httpx.TransportError as exc:
                return type(exc).__name__

    got = [status({**GOOD, **times}) for times in OUT_OF_RANGE_TIMES]
    # in a batch the valid event must be kept (200 with a per-event rejection)
    got.append(
        status({"batch": [{"type": "track", **GOOD}, {"type": "track", **GOOD, **OUT_OF_RANGE_TIMES[0]}]})
    )
    assert got == [400, 400, 400, 400, 200], got
