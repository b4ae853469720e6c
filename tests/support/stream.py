"""Helpers of the stream integration tests (no tests here): worker subprocesses on per-test
topics, prefixes, app ids and free ports; producing events; reading S3 back."""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from eventpipe.devstack.procs import spawn
from eventpipe.events import normalize, user_key
from eventpipe.keys import parse_raw_key
from eventpipe.s3 import iter_gzip_lines, list_keys
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages
from eventpipe.timeutil import parse_ts
from tests.support.pipeline import child_env
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """One ``eventpipe.stream.worker`` process with its own metrics port and log file."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        name: str = "w",
        module: str = "eventpipe.stream.worker",
        **overrides: Any,
    ) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"stream-{name}.log"
        env = child_env(settings, **{"flush_interval_s": 2, **overrides, "stream_web_port": self.port})
        self.proc = spawn([sys.executable, "-m", module], self.log_path, cwd=ROOT, env=env)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as resp:
            return resp.read().decode()

    def partitions(self) -> list[int]:
        """The partitions this worker owns right now (its /healthz)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
            return orjson.loads(resp.read())["partitions"]

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def synthetic_events(users: int, seed: int = 11, in_order: bool = True) -> list[dict[str, Any]]:
    """Normalised events; ``in_order``: sorted by timestamp with ``receivedAt`` monotone
    (no ``sentAt``, so the corrected timestamp is the client's, received 1 s later)."""
    now = datetime(2026, 11, 26, 17, 40, tzinfo=UTC)
    out = []
    for msg in messages(seed=seed, shape=TrafficShape(users=users), now=now):
        if in_order:
            msg = {k: v for k, v in msg.items() if k != "sentAt"}
            received = parse_ts(msg["timestamp"]) + timedelta(seconds=1)
        else:
            received = now + timedelta(milliseconds=len(out))
        out.append(normalize(msg, event_type=None, received_at=received, source="test"))
    if in_order:
        out.sort(key=lambda e: (e["timestamp"], e["receivedAt"]))
    return out


def produce(settings: Settings, values: Iterable[tuple[bytes | None, bytes]]) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20)
    futures = [producer.send(settings.events_topic, key=key, value=value) for key, value in values]
    producer.flush(30)
    for future in futures:
        future.get(10)
    producer.close()
    return len(futures)


def produce_events(settings: Settings, events: list[dict[str, Any]]) -> int:
    return produce(settings, ((user_key(e).encode(), orjson.dumps(e)) for e in events))


def raw_objects(s3: Any, settings: Settings) -> list[tuple[str, dict[str, str], list[bytes]]]:
    out = []
    for obj in list_keys(s3, settings.s3_bucket, settings.s3_prefix + "raw/"):
        got = s3.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])
        out.append((obj["Key"], got["Metadata"], list(iter_gzip_lines(got["Body"].read()))))
    return out


def raw_line_counts(s3: Any, settings: Settings) -> Counter:
    return Counter(line for _, _, lines in raw_objects(s3, settings) for line in lines)


def agg_sums(s3: Any, settings: Settings) -> dict[str, dict]:
    """Deltas summed over every aggregate object, shaped like ``tests.reference.truth``."""
    eng: dict = defaultdict(lambda: [0, 0])
    exp: dict = defaultdict(lambda: [0, 0])
    assignments: dict = {}
    for obj in list_keys(s3, settings.s3_bucket, settings.s3_prefix + "agg/"):
        body = s3.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])["Body"].read()
        for line in iter_gzip_lines(body):
            row = orjson.loads(line)
            if "/engagement_daily/" in obj["Key"]:
                acc = eng[(datetime.fromisoformat(row["day"]).date(), row["event"])]
            elif "/experiment_daily/" in obj["Key"]:
                day = datetime.fromisoformat(row["day"]).date()
                acc = exp[(day, row["experiment_id"], row["variant"], row["event"])]
            else:
                key = (row["experiment_id"], row["user_key"])
                assignments[key] = (row["variant"], row["first_exposed_at"])
                continue
            acc[0] += row["event_count"]
            acc[1] += row["user_count"]
    return {
        "engagement_daily": {k: tuple(v) for k, v in eng.items()},
        "experiment_daily": {k: tuple(v) for k, v in exp.items()},
        "experiment_assignments": assignments,
    }


def committed_offsets(settings: Settings) -> dict[int, int]:
    """The stream group's committed offset per partition of the events topic (0 if none)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.stream_app_id)
    try:
        partitions = consumer.partitions_for_topic(settings.events_topic) or set()
        tps = [TopicPartition(settings.events_topic, p) for p in sorted(partitions)]
        return {tp.partition: consumer.committed(tp) or 0 for tp in tps}
    finally:
        consumer.close()


def delete_topics(settings: Settings, *names: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.delete_topics(list(names))
    except Exception:  # best effort: a leftover test topic harms nothing
        pass
    finally:
        admin.close()


def cleanup(s3: Any, settings: Settings) -> None:
    """Everything a test's workers left: topics, state changelog, objects, Faust data dir."""
    import shutil
    import tempfile

    delete_topics(
        settings,
        settings.events_topic,
        settings.deadletter_topic,
        settings.batches_topic,
        f"{settings.stream_app_id}-state-changelog",
    )
    delete_prefix(s3, settings)
    shutil.rmtree(
        Path(tempfile.gettempdir()) / "eventpipe-stream" / settings.stream_app_id, ignore_errors=True
    )


def delete_prefix(s3: Any, settings: Settings) -> None:
    """Remove this test's own objects (its unique prefix only)."""
    for obj in list(list_keys(s3, settings.s3_bucket, settings.s3_prefix)):
        s3.delete_object(Bucket=settings.s3_bucket, Key=obj["Key"])


def thirds(events: list) -> list[list]:
    n = len(events) // 3
    return [events[:n], events[n : 2 * n], events[2 * n :]]


def raw_count(s3, settings) -> int:
    return sum(len(lines) for _, _, lines in raw_objects(s3, settings))


def assert_exactly_once(s3, settings, events: list) -> None:
    objects = raw_objects(s3, settings)
    lines = Counter(line for _, _, body in objects for line in body)
    expected = Counter(orjson.dumps(e) for e in events)
    missing, extra = expected - lines, lines - expected
    assert not missing and not extra, (
        f"{sum(missing.values())} events missing, {sum(extra.values())} archived twice; objects: "
        + str(sorted((parse_raw_key(k)[2:], m["last-offset"], len(b)) for k, m, b in objects))
    )
    spans: dict[int, list[tuple[int, int]]] = {}
    for key, meta, _ in objects:
        _, _, partition, first = parse_raw_key(key)
        spans.setdefault(partition, []).append((first, int(meta["last-offset"])))
    for runs in spans.values():
        runs.sort()
        assert all(a_last < b_first for (_, a_last), (b_first, _) in itertools.pairwise(runs))


def metric(text: str, name: str) -> float:
    pattern = re.compile(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))
