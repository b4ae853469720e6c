"""The collector with probes, for finding where the open-loop tail comes from (issue 16).

``python -m bench.tail_probe`` runs ``eventpipe ingest`` unchanged, plus three probes that
append one JSON object per line to ``$EVENTPIPE_TAIL_PROBE`` (``t`` = CLOCK_MONOTONIC,
comparable with the load generator's clock):

* ``loop``: the event loop was late by ``ms`` waking a 2 ms sleep (every stall over 5 ms),
  ``cpu_ms`` of it spent running (the rest: waiting for a core or the GIL), with the main
  thread's stack as a watchdog thread saw it while the loop was stuck;
* ``gc``: a garbage collection (every gen-2 one, any other over 1 ms): its pause and the
  CPU time it took (the pause less any wait for a core);
* ``rdkafka``: librdkafka's statistics every second: the broker's round trip, the time
  records waited in librdkafka's queues, requests in flight (``statistics.interval.ms``).

``EVENTPIPE_TAIL_PRODUCER_CONFIG`` (a JSON object, e.g. ``{"linger.ms": 5}``) overrides the
collector's librdkafka settings, for an A/B. Diagnostics only: nothing in the service imports it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
import traceback
from typing import Any

STALL_MS = 5.0
TICK_S = 0.002


class Probe:
    def __init__(self, path: str) -> None:
        self._out = open(path, "a", buffering=1)  # noqa: SIM115  # open for the process's life
        self._lock = threading.Lock()
        self.last_tick = time.monotonic()
        self.stack: str | None = None
        self.task: asyncio.Task[None] | None = None

    def emit(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, "t": time.monotonic(), **fields})
        with self._lock:
            self._out.write(line + "\n")

    def on_gc(self, phase: str, info: dict[str, int], _started: list[float] = [0.0, 0.0]) -> None:  # noqa: B006
        """Wall time and the thread's CPU time of each collection: on a busy machine the wall
        time includes waiting for a core, the CPU time is the collection's own cost."""
        if phase == "start":
            _started[:] = [time.perf_counter(), time.thread_time()]
            return
        ms = (time.perf_counter() - _started[0]) * 1000
        cpu_ms = (time.thread_time() - _started[1]) * 1000
        if info["generation"] == 2 or ms > 1.0:
            self.emit("gc", gen=info["generation"], ms=round(ms, 2), cpu_ms=round(cpu_ms, 2),
                      collected=info["collected"])  # fmt: skip

    def on_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        brokers = [b for b in stats["brokers"].values() if b.get("nodeid", -1) >= 0]
        self.emit(
            "rdkafka",
            msg_cnt=stats["msg_cnt"],
            brokers=[
                {
                    "rtt_p99_ms": b["rtt"]["p99"] / 1000,
                    "rtt_max_ms": b["rtt"]["max"] / 1000,
                    "int_latency_p99_ms": b["int_latency"]["p99"] / 1000,
                    "int_latency_max_ms": b["int_latency"]["max"] / 1000,
                    "outbuf_latency_max_ms": b["outbuf_latency"]["max"] / 1000,
                    "waitresp_cnt": b["waitresp_cnt"],
                    "tx": b["tx"],
                }
                for b in brokers
            ],
            batchcnt_avg=[t["batchcnt"]["avg"] for t in stats["topics"].values()],
        )

    async def watch_loop(self) -> None:
        """A 2 ms sleep, over and over: how late it wakes is how long the loop was busy."""
        while True:
            before, cpu_before = time.monotonic(), time.thread_time()
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.last_tick = now
            late_ms = (now - before - TICK_S) * 1000
            if late_ms > STALL_MS:  # cpu_ms: how much of it the loop's thread was running
                cpu_ms = round((time.thread_time() - cpu_before) * 1000, 2)
                self.emit("loop", at=before, ms=round(late_ms, 2), cpu_ms=cpu_ms, stack=self.stack)
            self.stack = None

    def watchdog(self, main_id: int) -> None:
        """While the loop has not ticked for a stall's length, keep the main thread's stack."""
        while True:
            time.sleep(0.01)  # each look takes the GIL: rarely enough not to cause stalls itself
            if self.stack is None and time.monotonic() - self.last_tick > STALL_MS / 1000 + TICK_S:
                frame = sys._current_frames().get(main_id)
                if frame is not None:
                    self.stack = "".join(traceback.format_stack(frame, limit=12)[-6:])


def main() -> int:
    import confluent_kafka

    from eventpipe.ingest import main as ingest_main

    probe = Probe(os.environ["EVENTPIPE_TAIL_PROBE"])
    if switch := os.environ.get("EVENTPIPE_TAIL_SWITCH_INTERVAL_S"):  # an A/B of the GIL hand-off
        sys.setswitchinterval(float(switch))
    gc.callbacks.append(probe.on_gc)
    producer_class = confluent_kafka.Producer

    extra = json.loads(os.environ.get("EVENTPIPE_TAIL_PRODUCER_CONFIG", "{}"))  # A/B of librdkafka's settings

    def producer(config: dict[str, Any], **kwargs: Any) -> Any:
        config = {**config, **extra, "statistics.interval.ms": 1000, "stats_cb": probe.on_stats}
        return producer_class(config, **kwargs)

    confluent_kafka.Producer = producer  # the publisher imports it when it connects
    factory = ingest_main.app_factory

    def app_factory() -> Any:
        app = factory()
        loop = asyncio.get_running_loop()  # uvicorn builds the app inside its running loop
        probe.task = loop.create_task(probe.watch_loop())  # held: a bare task may be collected
        main_id = threading.get_ident()
        threading.Thread(target=probe.watchdog, args=(main_id,), daemon=True).start()
        return app

    ingest_main.app_factory = app_factory  # uvicorn imports the factory by name
    return ingest_main.serve()


if __name__ == "__main__":
    sys.exit(main())
