"""Where the open-loop p99 comes from: slow requests set beside what happened at that moment.

``python -m bench.openloop_tail [events_per_s] [seconds]`` (defaults 20,000/s, 10 s, after a
2 s warm-up) runs the collector under bench/tail_probe.py and the open-loop generator of
bench/openloop.py at the same time as three observers: the broker JVM's collections
(bench/jvmgc.py, every 100 ms), every process's CPU time and how often the collector's loop
thread was preempted or blocked and its poll thread blocked (``/proc``, every 100 ms; see
bench/ingest_threads.py) and the collector's probes
(event-loop stalls with the stack that held the loop, GC pauses, librdkafka statistics). It
prints each stall window (consecutive requests over ``SLOW_MS``) with what overlapped it, and
totals. The load comes from the compiled generator (bench/openloop_compiled.py) when Go is
there, else (or with ``EVENTPIPE_TAIL_GENERATOR=python``) from the Python one. Diagnostics,
not a figure of ``make bench``; one run is ~20 s.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial
from pathlib import Path

from bench.common import process, python_exe
from bench.ingest import BATCH, batch_body, ensure_topic
from bench.ingest_threads import counters
from bench.jvmgc import BrokerGc, pauses, pid_listening
from bench.openloop import open_loop, percentile
from bench.openloop_compiled import build, open_loop_compiled
from tests.support.servers import free_port

SLOW_MS = 50.0
TICKS = os.sysconf("SC_CLK_TCK")


def _pids_cpu() -> dict[str, float]:
    """CPU seconds so far of every process, keyed by 'pid name'."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        out[f"{stat.parent.name} {head.split('(', 1)[1]}"] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def sample_cpu(stop: threading.Event, into: list, collector: int) -> None:
    """Every 100 ms: (t, the busiest processes of the interval, in cores, and how often the
    collector's loop thread was preempted / blocked and its poll thread blocked in it)."""
    before, then, threads = _pids_cpu(), time.monotonic(), counters(collector)
    while not stop.wait(0.1):
        now, at, threads_now = _pids_cpu(), time.monotonic(), counters(collector)
        used = {name: (cpu - before.get(name, cpu)) / (at - then) for name, cpu in now.items()}
        loop = {
            "loop_preempted": threads_now["main"][1] - threads["main"][1],
            "loop_blocked": threads_now["main"][0] - threads["main"][0],
            "poll_blocked": threads_now["other"][0] - threads["other"][0],
        }
        busiest = sorted(((round(v, 2), k) for k, v in used.items() if v > 0.05), reverse=True)[:4]
        into.append((at, busiest, loop))
        before, then, threads = now, at, threads_now


def publish_buckets(metrics_url: str) -> dict[str, float]:
    """The collector's own publish histogram (warm-up included): share of requests whose
    publish took longer than each bound."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    bucket = r'eventpipe_ingest_publish_duration_seconds_bucket\{le="([^"]+)"\} (\S+)'
    counts = {le: float(n) for le, n in re.findall(bucket, text)}
    total = counts.get("+Inf", 0.0) or 1.0
    shown = ("0.01", "0.025", "0.05", "0.1")
    return {f">{le}s": round(1 - n / total, 4) for le, n in counts.items() if le in shown}


def windows(samples: list[tuple[float, float, bool]]) -> list[tuple[float, float, int, float]]:
    """Runs of slow requests (due within 50 ms of each other): (first due, last done, n, max ms)."""
    slow = sorted((due, lat) for due, lat, _ in samples if lat * 1000 > SLOW_MS)
    out: list[list[float]] = []
    for due, lat in slow:
        if out and due - out[-1][0] <= 0.05 + out[-1][1] - out[-1][0]:
            out[-1] = [out[-1][0], max(out[-1][1], due + lat), out[-1][2] + 1, max(out[-1][3], lat * 1000)]
        else:
            out.append([due, due + lat, 1, lat * 1000])
    return [(a, b, int(n), m) for a, b, n, m in out]


def report(samples: list, probes: list[dict], cpu: list, gc_pauses: list, start: float) -> None:
    lat = [s[1] * 1000 for s in samples]
    print(f"requests {len(lat)}: p50 {percentile(lat, .5):.1f} p99 {percentile(lat, .99):.1f} "
          f"max {max(lat):.1f} ms")  # fmt: skip
    gcs = [p for p in probes if p["kind"] == "gc"]
    loops = [p for p in probes if p["kind"] == "loop"]
    print(f"collector loop stalls > 5 ms: {len(loops)}, total {sum(p['ms'] for p in loops):.0f} ms; "
          f"GC pauses logged: {len(gcs)} (gen2 {sum(p['gen'] == 2 for p in gcs)}), "
          f"total {sum(p['ms'] for p in gcs):.0f} ms")  # fmt: skip
    print("broker stop-the-world GC: " + ", ".join(f"+{t - start:.3f} {ms:.0f} ms" for t, ms in gc_pauses))
    for first, last, n, worst in windows(samples):
        print(f"\n== stall window +{first - start:.3f}..+{last - start:.3f} s: {n} requests > "
              f"{SLOW_MS:.0f} ms, worst {worst:.0f} ms")  # fmt: skip
        for p in probes:
            at = p.get("at", p["t"])
            if first - 0.3 <= at <= last:
                shown = {k: v for k, v in p.items() if k not in ("t", "stack")}
                print(f"  +{at - start:.3f} {shown}")
                if p.get("stack"):
                    print("    " + p["stack"].replace("\n", "\n    ")[-900:])
        for t, ms in gc_pauses:
            if first - 0.3 <= t <= last + 0.1:
                print(f"  +{t - start:.3f} broker GC pause {ms:.0f} ms")
        for at, top, loop in cpu:
            if first - 0.1 <= at <= last + 0.1:
                print(f"  +{at - start:.3f} cpu {top} collector {loop}")


def main(events_per_s: float = 20_000, seconds: float = 10, bootstrap: str = "127.0.0.1:9092") -> dict:
    topic = "bench-eventpipe-openloop"
    ensure_topic(bootstrap, topic)
    probe_file = Path(tempfile.mkstemp(prefix="tail-probe-", suffix=".jsonl")[1])
    port = free_port()
    env = {
        "EVENTPIPE_INGEST_PORT": str(port),
        "EVENTPIPE_EVENTS_TOPIC": topic,
        "EVENTPIPE_KAFKA_BOOTSTRAP": bootstrap,
        "EVENTPIPE_TAIL_PROBE": str(probe_file),
    }
    stop, cpu, samples = threading.Event(), [], []
    binary = build()  # the compiled generator when Go is there: no Python generator on the cores
    load = open_loop if isinstance(binary, str) else partial(open_loop_compiled, binary)
    if isinstance(binary, str) or os.environ.get("EVENTPIPE_TAIL_GENERATOR") == "python":
        load = open_loop
    broker = BrokerGc(pid_listening(int(bootstrap.rsplit(":", 1)[1])))
    with process([python_exe(), "-m", "bench.tail_probe"], env, f"http://127.0.0.1:{port}/readyz") as probed:
        url = f"http://127.0.0.1:{port}/v1/batch"
        open_loop(url, batch_body(), events_per_s / BATCH, seconds=2)  # warm-up
        sampler = threading.Thread(target=sample_cpu, args=(stop, cpu, probed.pid), daemon=True)
        sampler.start()
        start = time.monotonic()
        with broker:
            result = load(url, batch_body(), events_per_s / BATCH, seconds=seconds, samples=samples)
        publish = publish_buckets(f"http://127.0.0.1:{port}/metrics")
        stop.set()
        sampler.join(timeout=5)
    probes = [json.loads(line) for line in probe_file.read_text().splitlines()]
    probe_file.unlink()
    generator = "python" if load is open_loop else "go"
    print(f"load average {os.getloadavg()}; offered {events_per_s:,.0f} events/s for {seconds} s "
          f"({generator} generator, lag p99 {result['lag_p99_ms']:.1f} ms, "
          f"{result['non_2xx']:.0f} failed)")  # fmt: skip
    report(samples, [p for p in probes if p.get("at", p["t"]) >= start], cpu, pauses(broker.samples), start)
    for s in (p for p in probes if p["kind"] == "rdkafka" and p["t"] >= start):
        print(f"  rdkafka +{s['t'] - start:.1f}: {s['brokers']} batch avg {s['batchcnt_avg']}")
    print(f"publish (produce -> every ack) share of requests over: {publish}")
    return {**result, **broker.summary(samples), "load_average_1m": os.getloadavg()[0]}


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:3]), *sys.argv[3:4])
