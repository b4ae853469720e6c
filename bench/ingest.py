"""Ingest benchmark (issue 16's ingest.* rows), side by side in one run, on loopback,
bounded in time (~2.5 min at the defaults; ``EVENTPIPE_BENCH_INGEST_SECONDS`` lengthens
each load, 10 s by default):

* the collector in its DEFAULT configuration (librdkafka, lz4), one process: peak events/s
  in 100-event batches (wrk, 8 connections), single events (wrk, 32 connections), and p99
  latency OPEN LOOP at a constant offered rate of half that peak, from the compiled generator
  (bench/openloop_compiled.py, built with Go on first use) with the Python one
  (bench/openloop.py) right after it as a cross-check (``batch_open_loop_python_*``), with the
  broker JVM's stop-the-world GC pauses of the same seconds (bench/jvmgc.py);
* the minimal collector a competent user would write (bench/minimal_collector.py) under the
  same wrk loads; the peaks of both are the best of two alternating rounds, so a burst of
  other work on the shared machine cannot favour one. Before them the broker is warmed
  (``warm_broker``) and each round's process gets ``WARM_UP_S`` of load before its measured
  window, the same for both collectors: see ``warm_broker`` for why;
* kafka-python behind the same collector, the naive baseline (one ``send().get()`` per
  event), Kafka's own ProducerPerformance ceiling, lz4 vs none, and the strict JSON
  decoder's per-event costs (bench/ingest_json.py).
The load average before and after goes with the figures: absolute numbers on a shared
2-core machine are noisy, the ratios are what to compare.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from bench.common import ROOT, VENV_BIN, process, python_exe, wrk
from bench.ingest_threads import counters, per_request
from bench.jvmgc import BrokerGc, pid_listening
from bench.openloop import open_loop
from bench.openloop_compiled import build, open_loop_compiled
from tests.support.servers import free_port

BATCH = 100
SECONDS = int(os.environ.get("EVENTPIPE_BENCH_INGEST_SECONDS", "10"))
WARM_UP_S = 2  # per collector process, before a measured window: connections, producer id, metadata
BROKER_WARM_UP_EVENTS = 1_500_000  # before the peak rounds (a started broker settled after ~1M)
BROKER_WARM_UP_ROUNDS = 8  # at most (~45 s), 4 s each, alternating the two collectors
BASELINES = {"naive": "bench.naive_collector:app", "minimal": "bench.minimal_collector:app"}


def sample_events(n: int) -> list[dict]:
    return [
        {
            "type": "track",
            "userId": f"user-{i % 997}",
            "event": "Product Viewed",
            "messageId": str(uuid.uuid4()),
            "timestamp": "2026-11-26T10:00:00.000Z",
            "properties": {"product_id": f"p-{i}", "price": 19.99, "currency": "EUR", "category": "books"},
            "context": {"library": {"name": "analytics.js", "version": "4.1.0"}, "page": {"path": "/p"}},
        }
        for i in range(n)
    ]


def ensure_topic(bootstrap: str, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 6, 1)])
    except Exception:  # exists already
        pass
    finally:
        admin.close()


def kafka_ceiling(bootstrap: str, topic: str, record_size: int, records: int = 300_000) -> float:
    """org.apache.kafka.tools.ProducerPerformance from the same jars, same message size."""
    libs = ROOT / ".local" / "kafka" / "libs"
    out = subprocess.run(
        [
            "java",
            "-Xmx512m",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
            "batch.size=524288",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    found = re.findall(r"([\d.]+) records/sec", out)
    return float(found[-1])


def collector(kind: str, topic: str, bootstrap: str, client: str = "confluent", compression: str = "lz4"):
    port = free_port()
    env = {
        "EVENTPIPE_INGEST_PORT": str(port),
        "EVENTPIPE_EVENTS_TOPIC": topic,
        "EVENTPIPE_KAFKA_BOOTSTRAP": bootstrap,
        "EVENTPIPE_KAFKA_CLIENT": client,
        "EVENTPIPE_KAFKA_COMPRESSION": compression,
    }
    if kind in BASELINES:
        args = [
            python_exe(),
            "-m",
            "uvicorn",
            BASELINES[kind],
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        health = f"http://127.0.0.1:{port}/docs"
    else:
        args = [str(VENV_BIN / "eventpipe"), "ingest"]
        health = f"http://127.0.0.1:{port}/readyz"
    return port, process(args, env, health)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (librdkafka's too).
    Unlike events/s, CPU per event barely moves when other work shares the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children: around one ``wrk`` run, wrk's own."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def generated(load: Callable[[], dict]) -> dict:
    """Run one wrk load; beside its figures, the generator's own CPU seconds."""
    before = children_cpu_s()
    result = load()
    return {**result, "generator_cpu_s": children_cpu_s() - before}


def batch_body() -> bytes:
    return orjson.dumps({"batch": sample_events(BATCH)})


def broker_cpu_s(bootstrap: str) -> float:
    """CPU seconds of the broker process listening at ``bootstrap`` so far (0.0 if unknown)."""
    pid = pid_listening(int(bootstrap.rsplit(":", 1)[1]))
    return process_cpu_s(pid) if pid else 0.0


def warm_broker(bootstrap: str, seconds: int = 4, events: int = BROKER_WARM_UP_EVENTS) -> list[float]:
    """Unmeasured rounds of both collectors, alternating, until ``events`` went through the
    broker (at most ``BROKER_WARM_UP_ROUNDS``); its CPU per event in each round is returned.

    Why: a broker JVM started minutes before (``make bench`` starts the stack if it is not
    up) runs its produce path interpreted and compiles it as it goes. Measured 2026-12-02
    on a broker started just before the bench's rounds: its CPU fell from 28.0 to 3.7
    CPU-µs per event over the first ~1M events while the same rounds went from 37,693 to
    62,198 events/s; the JIT's threads take the collector's cores (its loop thread preempted
    4-8 times per request, then ~1). Peak rounds measured first in the stage read that
    state, the stage's later comparisons did not. A count, not a "settled" test: the JIT's
    tiers make plateaus (36.1, 20.7, 18.3, then 8.8 and 4.6 µs in one run), and a round's
    reading moves ±30% at the end (3.7 / 5.3 / 3.7)."""
    readings: list[float] = []
    sent = 0.0
    for round_ in range(BROKER_WARM_UP_ROUNDS):
        kind = ("eventpipe", "minimal")[round_ % 2]
        topic = f"bench-{kind}-confluent"
        ensure_topic(bootstrap, topic)
        port, proc = collector(kind, topic, bootstrap)
        with proc:
            before = broker_cpu_s(bootstrap)
            load = wrk(f"http://127.0.0.1:{port}/v1/batch", batch_body(), seconds, connections=8)
            done = max(load["requests_per_s"] * BATCH * seconds, 1.0)
            readings.append((broker_cpu_s(bootstrap) - before) / done * 1e6)
        sent += done
        if sent >= events:
            break
    return readings


def peak(kind: str, bootstrap: str, client: str = "confluent", seconds: int = SECONDS) -> dict:
    """Closed-loop peaks: 100-event batches, then single events, each process warmed for
    ``WARM_UP_S`` first (unmeasured; the same for every collector)."""
    topic = f"bench-{kind}-{client}"
    ensure_topic(bootstrap, topic)
    port, proc = collector(kind, topic, bootstrap, client)
    with proc as running:
        base = f"http://127.0.0.1:{port}"
        wrk(f"{base}/v1/batch", batch_body(), WARM_UP_S, connections=8)
        started, threads_before = process_cpu_s(running.pid), counters(running.pid)
        broker_before = broker_cpu_s(bootstrap)
        batch = generated(lambda: wrk(f"{base}/v1/batch", batch_body(), seconds, connections=8))
        between, threads_after = process_cpu_s(running.pid), counters(running.pid)
        broker_between = broker_cpu_s(bootstrap)
        single_body = orjson.dumps(sample_events(1)[0])
        single = generated(lambda: wrk(f"{base}/v1/track", single_body, seconds, connections=32))
        ended = process_cpu_s(running.pid)
    batch_events = max(batch["requests_per_s"] * BATCH * seconds, 1.0)
    single_requests = max(single["requests_per_s"] * seconds, 1.0)
    threads = per_request(threads_before, threads_after, round(batch_events / BATCH))
    return {
        **{f"batch_{name}": value for name, value in threads.items()},
        "batch_cpu_us_per_event": (between - started) / batch_events * 1e6,
        # the broker's share: a JVM still compiling its produce path costs several times more
        "batch_broker_cpu_us_per_event": (broker_between - broker_before) / batch_events * 1e6,
        "single_cpu_us_per_request": (ended - between) / single_requests * 1e6,
        # the load generator's own CPU beside the collector's: is wrk what holds a peak down?
        "batch_generator_cpu_us_per_event": batch["generator_cpu_s"] / batch_events * 1e6,
        "single_generator_cpu_us_per_request": single["generator_cpu_s"] / single_requests * 1e6,
        "batch_events_per_s": batch["requests_per_s"] * BATCH,
        "batch_p50_ms": batch["p50_ms"],
        "batch_closed_loop_p99_ms": batch["p99_ms"],
        "batch_non_2xx": batch["non_2xx"],
        "single_requests_per_s": single["requests_per_s"],
        "single_p50_ms": single["p50_ms"],
        "single_p99_ms": single["p99_ms"],
        "single_non_2xx": single["non_2xx"],
    }


def best_of(first: dict, second: dict) -> dict:
    """Per figure group, the round with the higher throughput (its latencies go with it)."""
    out = {}
    for group in ("batch", "single"):
        rate = "batch_events_per_s" if group == "batch" else "single_requests_per_s"
        winner = first if first[rate] >= second[rate] else second
        out.update({name: value for name, value in winner.items() if name.startswith(group)})
    return out


def latency_at_half_peak(bootstrap: str, peak_events_per_s: float, seconds: int = SECONDS) -> dict:
    """Our collector, open loop, at a constant half of its measured peak; beside it the
    broker JVM's stop-the-world GC pauses in the same seconds (every acks=all publish waits
    them out, so they bound the p99 from below).

    The figure comes from the compiled generator (bench/openloop_compiled.py), which leaves
    the two cores to the collector and the broker; the Python generator runs right after it
    against the same collector as a cross-check (``python_*``). Without Go, the Python
    generator gives the figure and ``generator`` says why. Beside the latencies, per request,
    each collector thread's waits, preemptions and CPU during the compiled run
    (bench/ingest_threads.py: was the tail the GIL, or a core taken by another process?)."""
    topic = "bench-eventpipe-openloop"
    ensure_topic(bootstrap, topic)
    rate = max(peak_events_per_s / 2 / BATCH, 1.0)
    binary = build()
    port, proc = collector("eventpipe", topic, bootstrap)
    with proc as running:
        url = f"http://127.0.0.1:{port}/v1/batch"
        open_loop(url, batch_body(), rate, seconds=2)  # warm-up: connections, producer
        requests: list[tuple[float, float, bool]] = []
        with BrokerGc(pid_listening(int(bootstrap.rsplit(":", 1)[1]))) as broker:
            load = partial(open_loop_compiled, binary) if isinstance(binary, Path) else open_loop
            threads_before = counters(running.pid)
            latency = load(url, batch_body(), rate, seconds=seconds, samples=requests)
            threads = per_request(threads_before, counters(running.pid), len(requests))
        figures = {**latency, **broker.summary(requests), **threads}
        if not isinstance(binary, Path):
            print(f"open loop: the Python generator gives the figure: {binary}")
            return {**figures, "generator": f"python ({binary})"}
        python_requests: list[tuple[float, float, bool]] = []
        with BrokerGc(pid_listening(int(bootstrap.rsplit(":", 1)[1]))) as python_broker:
            python = open_loop(url, batch_body(), rate, seconds=seconds, samples=python_requests)
        cross_check = {**python, **python_broker.summary(python_requests)}
    return {**figures, "generator": "go", **{f"python_{name}": value for name, value in cross_check.items()}}


def broker_bytes_per_event(bootstrap: str, topic: str) -> float:
    """What the broker stores per event of ``topic``: its log size over its record count."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        size = sum(
            part["partition_size"]
            for broker in admin.describe_log_dirs()
            for log_dir in broker["log_dirs"]
            for found in log_dir["topics"]
            if found["name"] == topic
            for part in found["partitions"]
        )
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        records = sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()
        admin.close()
    return size / max(records, 1)


def compression(bootstrap: str = "127.0.0.1:9092", seconds: int = SECONDS) -> dict:
    """The collector with lz4 (the default) and with none, side by side: throughput, p99, and
    the bytes the broker stores per event (fresh topics, so only this run's records count)."""
    out: dict[str, float] = {}
    for codec in ("lz4", "none"):
        topic = f"bench-compression-{codec}-{uuid.uuid4().hex[:8]}"
        ensure_topic(bootstrap, topic)
        port, proc = collector("eventpipe", topic, bootstrap, compression=codec)
        with proc:
            batch = wrk(f"http://127.0.0.1:{port}/v1/batch", orjson.dumps({"batch": sample_events(BATCH)}),
                        seconds, connections=8)  # fmt: skip
        out[f"{codec}_batch_events_per_s"] = batch["requests_per_s"] * BATCH
        out[f"{codec}_batch_p99_ms"] = batch["p99_ms"]
        out[f"{codec}_broker_bytes_per_event"] = broker_bytes_per_event(bootstrap, topic)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic])  # a fresh topic per run: leave none behind
        finally:
            admin.close()
    return out


def _ratio(ours: float, theirs: float) -> float:
    return ours / max(theirs, 1e-9)


def run(bootstrap: str = "127.0.0.1:9092") -> dict:
    from bench.ingest_json import json_costs

    load_before = os.getloadavg()[0]
    warm_up = warm_broker(bootstrap)
    rounds = [peak(kind, bootstrap, seconds=max(SECONDS // 2, 3)) for kind in ("eventpipe", "minimal") * 2]
    ours, minimal = best_of(rounds[0], rounds[2]), best_of(rounds[1], rounds[3])
    latency = latency_at_half_peak(bootstrap, ours["batch_events_per_s"])
    kafka_python = peak("eventpipe", bootstrap, "kafka-python", seconds=max(SECONDS // 2, 3))
    naive = peak("naive", bootstrap, seconds=max(SECONDS // 2, 3))
    record_size = len(orjson.dumps(sample_events(1)[0])) + 250  # + server-side fields
    ensure_topic(bootstrap, "bench-ceiling")
    ceiling = kafka_ceiling(bootstrap, "bench-ceiling", record_size)
    return {
        **ours,
        "batch_p99_ms": latency["p99_ms"],
        **{f"batch_open_loop_{name}": value for name, value in latency.items()},
        "batch_open_loop_offered_events_per_s": latency["offered_requests_per_s"] * BATCH,
        "minimal_events_per_s": minimal["batch_events_per_s"],
        "minimal_single_requests_per_s": minimal["single_requests_per_s"],
        "minimal_batch_closed_loop_p99_ms": minimal["batch_closed_loop_p99_ms"],
        "ratio_vs_minimal": _ratio(ours["batch_events_per_s"], minimal["batch_events_per_s"]),
        "single_ratio_vs_minimal": _ratio(ours["single_requests_per_s"], minimal["single_requests_per_s"]),
        # the same comparison in CPU per event/request of the collector process (minimal's over
        # ours: above 1.0 we spend less); robust where a shared machine makes events/s swing
        "minimal_batch_cpu_us_per_event": minimal["batch_cpu_us_per_event"],
        "minimal_batch_broker_cpu_us_per_event": minimal["batch_broker_cpu_us_per_event"],
        "broker_warm_up_rounds": float(len(warm_up)),
        "broker_warm_up_first_cpu_us_per_event": warm_up[0],
        "broker_warm_up_last_cpu_us_per_event": warm_up[-1],
        "minimal_single_cpu_us_per_request": minimal["single_cpu_us_per_request"],
        "minimal_single_generator_cpu_us_per_request": minimal["single_generator_cpu_us_per_request"],
        "cpu_ratio_vs_minimal": _ratio(minimal["batch_cpu_us_per_event"], ours["batch_cpu_us_per_event"]),
        "single_cpu_ratio_vs_minimal": _ratio(
            minimal["single_cpu_us_per_request"], ours["single_cpu_us_per_request"]
        ),
        "baseline_events_per_s": naive["batch_events_per_s"],
        "baseline_single_requests_per_s": naive["single_requests_per_s"],
        "kafka_ceiling_events_per_s": ceiling,
        "kafka_python_batch_events_per_s": kafka_python["batch_events_per_s"],
        "kafka_python_single_requests_per_s": kafka_python["single_requests_per_s"],
        # before issue 16 the default was kafka-python and these named the confluent run
        "confluent_batch_events_per_s": ours["batch_events_per_s"],
        "confluent_batch_p99_ms": latency["p99_ms"],
        "confluent_single_requests_per_s": ours["single_requests_per_s"],
        **compression(bootstrap, seconds=max(SECONDS // 2, 3)),
        **json_costs(),
        "speedup_vs_baseline": _ratio(ours["batch_events_per_s"], naive["batch_events_per_s"]),
        "confluent_speedup_vs_baseline": _ratio(ours["batch_events_per_s"], naive["batch_events_per_s"]),
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
        "cpus": float(os.cpu_count() or 0),
    }


if __name__ == "__main__":
    import sys

    # ``python -m bench.ingest compression``: only the lz4-vs-none comparison
    result = compression() if sys.argv[1:] == ["compression"] else run()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
