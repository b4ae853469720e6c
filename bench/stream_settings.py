"""The stream worker at the bench's cut settings and at the product defaults, alternated over
one topic: ``python -m bench.stream_settings [events] [pairs]`` (default ``bench.stream.EVENTS``
events, 3 pairs).

``bench.stream`` measures both since session 11 (its headline at the product defaults of
``eventpipe.settings``, 50k events and 2 s; ``SMALL_CUTS``, 10k events and 1 s, beside it);
this runs them in pairs. One topic is filled once; the
ceiling (``bench.stream._ceiling``: consume + orjson decode + per-user count) reads it once
per pair, then one worker per setting, in alternating order, each run a fresh consumer group
with its own state changelog and S3 prefix (removed after it), so every run reads the whole
topic from offset 0 and writes its own objects. Every reading is printed, one JSON object per line, with the
load average; the topics and prefixes are removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import orjson

import bench.stream as bs
from eventpipe.kafka_admin import create_topics
from eventpipe.settings import Settings

BENCH = bs.SMALL_CUTS
DEFAULTS = {
    "archive_max_events": Settings.model_fields["archive_max_events"].default,
    "flush_interval_s": Settings.model_fields["flush_interval_s"].default,
}


def _settings(tag: str, name: str, cuts: dict[str, Any]) -> Settings:
    return Settings(
        events_topic=f"bench-{tag}-events",
        deadletter_topic=f"bench-{tag}-rejected",
        batches_topic=f"bench-{tag}-batches",
        stream_app_id=f"bench-{tag}-{name}-stream",
        s3_prefix=f"bench/stream-{tag}-{name}/",
        **cuts,
    )


def _line(**fields: Any) -> None:
    fields |= {"at": time.strftime("%H:%M:%S", time.gmtime()), "load_1m": round(os.getloadavg()[0], 2)}
    print(orjson.dumps(fields).decode(), flush=True)


def main(events: int, pairs: int, cap_s: float = 300) -> None:
    tag = uuid.uuid4().hex[:8]
    topic = _settings(tag, "topic", BENCH)
    create_topics(topic, wait_s=30)
    try:
        values = bs._values(events)
        bs._fill(topic, values)
        total = len(values)
        del values
        for pair in range(pairs):
            rate, cpu = asyncio.run(bs._ceiling(topic, total, cap_s))
            _line(pair=pair, run="ceiling", events_per_s=round(rate), cpu_us_per_event=round(cpu, 2))
            order = ["bench", "defaults"] if pair % 2 == 0 else ["defaults", "bench"]
            for name in order:
                settings = _settings(tag, f"{name}{pair}", BENCH if name == "bench" else DEFAULTS)
                try:
                    rate, cpu = bs._worker_rate(settings, total, cap_s)
                finally:
                    bs.cleanup_run(settings)
                cuts = {k: getattr(settings, k) for k in BENCH}
                _line(pair=pair, run=name, **cuts, events_per_s=round(rate), cpu_us_per_event=round(cpu, 2))
    finally:
        bs._cleanup(topic)


if __name__ == "__main__":
    n = int(sys.argv[1]) if sys.argv[1:] else bs.EVENTS
    main(n, int(sys.argv[2]) if sys.argv[2:] else 3)
