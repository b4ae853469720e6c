"""Where the collector's time goes: ``python -m bench.ingest_profile [seconds] [batch|single]``.

Runs the collector (default configuration: librdkafka, lz4) under cProfile in its own
process, drives 100-event batches (or single events to /v1/track, 32 connections) at it
with wrk for ``seconds`` (10), lets it stop itself
(the profile is written on the way out) and prints the functions by own time and by
cumulative time. cProfile slows Python code down by roughly 2x, so read shares, not
absolute figures; librdkafka's native threads are not in it.
"""

from __future__ import annotations

import pstats
import sys
import tempfile
from pathlib import Path

import orjson

from bench.common import process, python_exe, wrk
from bench.ingest import BATCH, ensure_topic, sample_events
from tests.support.servers import free_port

# the collector as `eventpipe ingest` runs it, stopped from inside after argv[2] seconds
# (uvicorn re-raises a SIGTERM once drained, which would end the process unprofiled)
PROFILED = """
import cProfile, sys, threading, uvicorn
from eventpipe import logs
from eventpipe.ingest.server import server_config
from eventpipe.settings import get_settings
logs.configure()
config = server_config("eventpipe.ingest.main:app_factory", get_settings(), factory=True)
server = uvicorn.Server(config)
threading.Timer(float(sys.argv[2]), lambda: setattr(server, "should_exit", True)).start()
profiler = cProfile.Profile()
try:
    profiler.runcall(server.run)
finally:
    profiler.dump_stats(sys.argv[1])
"""


def profile(seconds: int = 10, mode: str = "batch", bootstrap: str = "127.0.0.1:9092") -> pstats.Stats:
    topic = "bench-profile"
    ensure_topic(bootstrap, topic)
    port = free_port()
    env = {
        "EVENTPIPE_INGEST_PORT": str(port),
        "EVENTPIPE_EVENTS_TOPIC": topic,
        "EVENTPIPE_KAFKA_BOOTSTRAP": bootstrap,
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ingest.prof"
        args = [python_exe(), "-c", PROFILED, str(out), str(seconds + 15)]
        with process(args, env, f"http://127.0.0.1:{port}/readyz") as proc:
            if mode == "single":
                body, path, connections, events = orjson.dumps(sample_events(1)[0]), "track", 32, 1
            else:
                body, path, connections, events = (
                    orjson.dumps({"batch": sample_events(BATCH)}),
                    "batch",
                    8,
                    BATCH,
                )
            result = wrk(f"http://127.0.0.1:{port}/v1/{path}", body, seconds, connections=connections)
            proc.wait(timeout=60)
        rate = result["requests_per_s"] * events
        print(f"under cProfile: {rate:,.0f} events/s, p99 {result['p99_ms']} ms")
        return pstats.Stats(str(out))


if __name__ == "__main__":
    stats = profile(int(sys.argv[1]) if sys.argv[1:] else 10, sys.argv[2] if sys.argv[2:] else "batch")
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)
