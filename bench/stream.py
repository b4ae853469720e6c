"""Stream benchmark: events/s through one worker (archive + aggregate) from a pre-filled
topic, side by side with a plain aiokafka consume-and-count loop over the same topic.

The ceiling (issue 16) is an honest minimal consumer over the same topic: aiokafka fetch +
orjson decode + a per-user count; the fetch-and-count-only figure of earlier runs is kept
as ``consume_only_events_per_s``. The state figure (``rss_growth_mb_10m``) comes from
``bench.stream_state`` in its own process (10M messageIds fed to the state structure
directly, ``EVENTPIPE_BENCH_STREAM_STATE_EVENTS`` to change; its docstring says why not
through Kafka).

Bounded: ``events`` synthetic events (default ``EVENTS``, 3M; ``EVENTPIPE_BENCH_STREAM_EVENTS``
to change, recorded as ``events``) on a fresh 6-partition topic, each phase time-capped. The
worker is a real ``eventpipe.stream.worker`` process (S3 uploads, state changelog, notices and
commits included); its clock starts at the first folded event (group join and start-up
excluded) and stops when every offset is committed.

Cut settings (issue 16, session 11): the headline (``events_per_s``, ``ratio_to_ceiling``,
``worker_cpu_us_per_event``) is the worker at the PRODUCT DEFAULTS (``eventpipe.settings``:
cuts of 50k events, 2 s flush bound; recorded as ``cut_max_events`` and ``flush_interval_s``),
what users run, as the ingest figures are taken at the default configuration. The same run
also measures the bench's earlier setting, ``SMALL_CUTS`` (10k events, 1 s), as the
``small_cuts_*`` fields. Order on the one topic: ceiling, worker at the defaults, worker at
the small cuts, consume-only; each worker its own group, state changelog and S3 prefix, so
each reads the whole topic and writes its own objects. Cuts written, by reason, beside each.
Topics, the state changelogs and the S3 prefixes are removed afterwards.

Why 1M events, not 100k as before issue 16's waiting pass: the worker's clock stops when the
last offset is committed, and each partition's last cut is written only when its 1 s flush
bound expires, so every run ends with up to a second of empty fetches the ceiling does not
pay. In a 100k run that was ~0.6 s of a ~3 s clock (19%, ``python -m bench.stream_waits``):
the figure measured the flush timer as much as the worker. A 1M run takes the worker ~20-30 s
here, the same wait is then ~2-3% of it. The measurement fix applies to both sides: the worker
and the ceiling read the same (longer) topic, and the ceiling's clock still starts after its
own start-up (connect, assign, seek), before its first fetch. docs/benchmarks.md has the
100k and 1M sizes side by side, alternated in the same minutes.

Why 3M since session 12: the headline moved to the product defaults (2 s flush bound) and the
worker got ~4x faster, so a 1M run took the worker ~10 s and its end-of-run wait for the flush
bound was back at 6.3% of its clock (``python -m bench.stream_waits 1000000 defaults``,
2026-12-03 06:00, load 1.4: 680 ms of empty fetches in a 10.8 s run), above the <= ~5% the 1M
size was chosen for. At 3M the same wait (at most one flush bound) is a third of that share.
Generating 3M events takes ~55 s of CPU (beside the state process) and ~1.7 GB in this process
until the topic is filled.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import ROOT, process, python_exe
from eventpipe.events import normalize, user_key
from eventpipe.kafka_admin import create_topics
from eventpipe.s3 import list_keys, s3_client
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages
from eventpipe.timeutil import utcnow
from tests.support.servers import free_port

PROCESSED = re.compile(r'^eventpipe_stream_events_total\{outcome="processed"\} (\S+)$', re.M)
CPU = re.compile(r"^process_cpu_seconds_total (\S+)$", re.M)
COMMITTED = re.compile(r"^eventpipe_stream_committed_offset\{partition=\"\d+\"\} (\S+)$", re.M)


# The run's size (module docstring): long enough that the flush-bound wait at its end is a
# few percent of the worker's clock; bigger runs behind the environment variable.
EVENTS = int(os.environ.get("EVENTPIPE_BENCH_STREAM_EVENTS", 3_000_000))

# The bench's cut setting before session 11 (module docstring), measured beside the defaults.
SMALL_CUTS: dict[str, Any] = {"archive_max_events": 10_000, "flush_interval_s": 1.0}
CUTS = re.compile(r'^eventpipe_stream_cuts_total\{reason="([^"]+)"\} (\S+)$', re.M)


def _values(count: int) -> list[tuple[bytes, bytes]]:
    received = utcnow()
    out: list[tuple[bytes, bytes]] = []
    users = max(count // 8, 10)  # the generator yields 8-11 events per user
    for msg in messages(seed=3, shape=TrafficShape(users=users, duplicate_rate=0.01), now=received):
        event = normalize(msg, event_type=None, received_at=received, source="bench")
        # a copy of exactly its length: orjson's bytes keep ~4 KB of buffer each (measured:
        # 200k dumps held 799 MB, their copies 82 MB), 7.8 GB for 1M events held for the fill
        out.append((user_key(event).encode(), bytes(memoryview(orjson.dumps(event)))))
        if len(out) == count:
            break
    return out


def _fill(settings: Settings, values: list[tuple[bytes, bytes]]) -> None:
    """Produce the bench's events (not measured: it only fills the topic). librdkafka, with
    the Java client's murmur2 partitioner, puts every key on the partition aiokafka's
    default partitioner chose for it before issue 16's longer run (the same topic; 200k
    events in 0.6 s instead of 8 s awaiting one aiokafka send per event)."""
    from confluent_kafka import Producer

    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,  # no reordering on a retry: offsets in produce order
            "linger.ms": 20,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    topic = settings.events_topic
    for key, value in values:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60) or failed:
        raise RuntimeError(f"the bench topic was not filled: {failed[:3] or 'flush timed out'}")


async def _ceiling(settings: Settings, total: int, cap_s: float, decode: bool = True) -> tuple[float, float]:
    """The honest ceiling (issue 16): plain aiokafka fetching every record of the topic,
    decoding it with orjson and counting events per user (``decode``), or fetch-and-count
    only (the ceiling of earlier runs, kept for comparison); events/s and CPU µs per event
    (this process's CPU time: on a shared machine the wall-clock rate moves with the load)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(settings.events_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started, cpu = 0, time.monotonic(), time.process_time()
        per_user: dict[str, int] = {}
        while seen < total and time.monotonic() - started < cap_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                seen += len(records)
                if decode:
                    for record in records:
                        event = orjson.loads(record.value)
                        user = event.get("userId") or event.get("anonymousId")
                        per_user[user] = per_user.get(user, 0) + 1
        if decode and sum(per_user.values()) != seen:
            raise RuntimeError("the ceiling lost events")  # it must do the work it claims
        return seen / (time.monotonic() - started), (time.process_time() - cpu) / seen * 1e6
    finally:
        await consumer.stop()


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _scrape(port: int) -> tuple[float, float, float]:
    """Events processed, offsets committed, the worker's CPU seconds."""
    text = _metrics(port)
    processed = sum(float(v) for v in PROCESSED.findall(text))
    committed = sum(float(v) for v in COMMITTED.findall(text))
    return processed, committed, float(CPU.findall(text)[0])


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time, from /proc (what ``process_cpu_seconds_total`` reads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group_committed(admin: Any, group: str) -> float:
    """The offsets the worker's group has committed, summed over the partitions (from the
    broker: polling them costs the worker nothing)."""
    return float(sum(meta.offset for meta in admin.list_group_offsets({group: None})[group].values()))


def _worker_rate(settings: Settings, total: int, cap_s: float, python: str = "") -> tuple[float, float]:
    """Events/s and the worker's CPU µs per event (``_worker_run``)."""
    rate, cpu, _ = _worker_run(settings, total, cap_s, python)
    return rate, cpu


def _worker_run(
    settings: Settings, total: int, cap_s: float, python: str = ""
) -> tuple[float, float, dict[str, int]]:
    """Events/s and the worker's CPU µs per event, both from its first folded event until
    every offset is committed, and the cuts it wrote by reason (scraped after the clock
    stopped). The first event is seen on ``/metrics``; from then on the
    bench asks the broker for the committed offsets and reads the worker's CPU from /proc, so
    the measured CPU holds no scrapes (every 50 ms they cost it ~2 µs per event; Prometheus
    scrapes every 15 s)."""
    from kafka import KafkaAdminClient

    port = free_port()
    env = settings.environment()
    env["EVENTPIPE_STREAM_WEB_PORT"] = str(port)
    args = [python or python_exe(), "-m", "eventpipe.stream.worker"]
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        with process(args, env, f"http://127.0.0.1:{port}/metrics") as proc:
            deadline = time.monotonic() + cap_s
            started = None
            committed = 0.0
            while started is None and time.monotonic() < deadline:
                try:
                    processed, committed, _ = _scrape(port)
                except (TimeoutError, OSError):  # a busy worker answers late: the clock runs on
                    continue
                if processed > 0:
                    started, cpu_at_start = time.monotonic(), _cpu_seconds(proc.pid)
                else:
                    time.sleep(0.01)
            while started is not None and committed < total and time.monotonic() < deadline:
                time.sleep(0.05)
                committed = _group_committed(admin, settings.stream_app_id)
            if started is None or committed < total:
                raise RuntimeError(f"the worker committed {committed:.0f} of {total} events within {cap_s}s")
            elapsed, cpu = time.monotonic() - started, _cpu_seconds(proc.pid)
            cuts = {reason: int(float(n)) for reason, n in CUTS.findall(_metrics(port))}
            return total / elapsed, (cpu - cpu_at_start) / total * 1e6, cuts
    finally:
        admin.close()


def worker_only(
    python: str, tag: str, events: int, cap_s: float = 300, cuts: dict[str, Any] | None = None
) -> tuple[float, float]:
    """Only the worker part of ``run`` (at ``cuts``, by default ``SMALL_CUTS``, the profiles'
    setting so far; a fresh topic of ``events`` bench events, cleaned up after), with the worker
    process started by ``python`` (a wrapper: py-spy, instrumentation); events/s and worker CPU
    µs per event."""
    settings = Settings(
        events_topic=f"bench-{tag}-events",
        deadletter_topic=f"bench-{tag}-rejected",
        batches_topic=f"bench-{tag}-batches",
        stream_app_id=f"bench-{tag}-stream",
        s3_prefix=f"bench/stream-{tag}/",
        **(SMALL_CUTS if cuts is None else cuts),
    )
    create_topics(settings, wait_s=30)
    try:
        values = _values(events)
        _fill(settings, values)
        total = len(values)
        del values  # not needed while the worker runs
        return _worker_rate(settings, total, cap_s, python)
    finally:
        _cleanup(settings)


def _state_rss_started(events: int) -> subprocess.Popen[str]:
    """``bench.stream_state`` in a fresh process (its RSS is the state's alone), started
    while the bench generates its events (``_state_rss``)."""
    return subprocess.Popen(
        [python_exe(), "-m", "bench.stream_state", str(events), "direct"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _state_rss(proc: subprocess.Popen[str]) -> dict[str, float]:
    """The state figures of a ``_state_rss_started`` process, once it is done."""
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode:
        raise RuntimeError(f"bench.stream_state failed ({proc.returncode}): {err.strip()[-2000:]}")
    return orjson.loads(out.strip().splitlines()[-1])


def _worker_settings(settings: Settings, name: str, cuts: dict[str, Any]) -> Settings:
    """One worker run over ``settings``' topic: its own group, changelog and S3 prefix."""
    return settings.model_copy(
        update={
            "stream_app_id": f"{settings.stream_app_id}-{name}",
            "s3_prefix": f"{settings.s3_prefix}{name}/",
            **cuts,
        }
    )


def cleanup_run(settings: Settings, topics: tuple[str, ...] = ()) -> None:
    """A worker run's own leftovers: its state changelog and S3 prefix, and ``topics``."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.delete_topics([*topics, f"{settings.stream_app_id}-state-changelog"])
    except Exception:  # best effort: leftover bench topics harm nothing
        pass
    finally:
        admin.close()
    delete_prefix(settings)
    shutil.rmtree(
        Path(tempfile.gettempdir()) / "eventpipe-stream" / settings.stream_app_id, ignore_errors=True
    )


def _measured_worker(settings: Settings, name: str, cuts: dict[str, Any], total: int, cap_s: float) -> dict:
    """A worker over ``settings``' topic at ``cuts`` (``_worker_run``), its leftovers removed."""
    run_settings = _worker_settings(settings, name, cuts)
    try:
        rate, cpu, written = _worker_run(run_settings, total, cap_s)
    finally:
        cleanup_run(run_settings)
    return {"rate": rate, "cpu": cpu, "cuts": written}


def _cleanup(settings: Settings) -> None:
    """The run's topics, and what a worker run under ``settings`` itself left."""
    cleanup_run(settings, (settings.events_topic, settings.deadletter_topic, settings.batches_topic))


def delete_prefix(settings: Settings) -> None:
    """Every object under the run's S3 prefix."""
    s3 = s3_client(settings)
    for obj in list(list_keys(s3, settings.s3_bucket, settings.s3_prefix)):
        s3.delete_object(Bucket=settings.s3_bucket, Key=obj["Key"])


def run(
    settings_overrides: dict[str, Any] | None = None,
    events: int = EVENTS,
    cap_s: float = 300,
    state_events: int = int(os.environ.get("EVENTPIPE_BENCH_STREAM_STATE_EVENTS", 10_000_000)),
) -> dict:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        **{
            "events_topic": f"bench-{tag}-events",
            "deadletter_topic": f"bench-{tag}-events-rejected",
            "batches_topic": f"bench-{tag}-batches",
            "stream_app_id": f"bench-{tag}-stream",
            "s3_prefix": f"bench/stream-{tag}/",
            **(settings_overrides or {}),
        }
    )
    # The state's own process runs while the events are generated (both only CPU, neither
    # measured for time) and is done before anything is: the worker and the ceiling run alone.
    state_proc = _state_rss_started(state_events)
    try:
        values = _values(events)
    except BaseException:
        state_proc.kill()
        state_proc.wait()
        raise
    state = _state_rss(state_proc)
    total = len(values)
    create_topics(settings, wait_s=30)
    try:
        _fill(settings, values)
        del values  # ~0.5 GB at 1M events the measured phases have no use for
        # the headline's worker right after the ceiling, then the small cuts (module docstring)
        ceiling, ceiling_cpu = asyncio.run(_ceiling(settings, total, cap_s))
        headline = {k: getattr(settings, k) for k in SMALL_CUTS}
        defaults = _measured_worker(settings, "defaults", headline, total, cap_s)
        small = _measured_worker(settings, "small", SMALL_CUTS, total, cap_s)
        consume_only, _ = asyncio.run(_ceiling(settings, total, cap_s, decode=False))
    finally:
        _cleanup(settings)
    return {
        "events_per_s": round(defaults["rate"], 1),
        "ceiling_events_per_s": round(ceiling, 1),
        "consume_only_events_per_s": round(consume_only, 1),
        "events": total,
        "ratio_to_ceiling": round(defaults["rate"] / ceiling, 3),
        # CPU per event (load-independent where wall clock is not): the worker process vs
        # the ceiling's loop, and their ratio (the ceiling's CPU over the worker's)
        "worker_cpu_us_per_event": round(defaults["cpu"], 2),
        "ceiling_cpu_us_per_event": round(ceiling_cpu, 2),
        "cpu_ratio_to_ceiling": round(ceiling_cpu / defaults["cpu"], 3),
        "cut_max_events": headline["archive_max_events"],
        "flush_interval_s": headline["flush_interval_s"],
        "cuts": defaults["cuts"],
        # the same topic at the bench's earlier cut setting (SMALL_CUTS), after the defaults
        "small_cuts_events_per_s": round(small["rate"], 1),
        "small_cuts_ratio_to_ceiling": round(small["rate"] / ceiling, 3),
        "small_cuts_worker_cpu_us_per_event": round(small["cpu"], 2),
        "small_cuts_cpu_ratio_to_ceiling": round(ceiling_cpu / small["cpu"], 3),
        "small_cuts_cut_max_events": SMALL_CUTS["archive_max_events"],
        "small_cuts_flush_interval_s": SMALL_CUTS["flush_interval_s"],
        "small_cuts_cuts": small["cuts"],
        "rss_growth_mb_10m": state["rss_growth_mb"],
        "state_peak_rss_growth_mb": state["peak_rss_growth_mb"],
        "state_bytes_per_entry": state["bytes_per_entry"],
        "state_messageids": state["messageids"],
        "state_marks": state["marks"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    print(run(events=20_000, state_events=1_000_000))
