"""Entry point of ``eventpipe stream``: one Faust worker running the stream app."""

from __future__ import annotations

import gc

import faust

from eventpipe.bootstrap import build_stream
from eventpipe.logs import JsonFormatter
from eventpipe.stream.settings import StreamSettings

# Python's cyclic collector at its defaults runs a young pass every 700 container allocations:
# a fetched run of decoded events (thousands of dicts alive at once) set off thousands of
# passes per 100k events, each walking the run, plus full passes over the state: ~10 CPU-us
# per event (docs/stream.md "Garbage collector"). Events are freed by reference counting
# (they hold no cycles), so a rarer young pass frees the same memory.
GC_THRESHOLDS = (50_000, 10, 10)

QUIET = ("kafka", "aiokafka", "botocore", "urllib3", "faust", "mode", "aiohttp")


def logging_config(level: str = "INFO") -> dict:
    """One JSON object per line on stderr (eventpipe.logs), library chatter at WARNING."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"level": "WARNING"} for name in QUIET},
    }


def tune_gc() -> None:
    """Everything imported and built by now lives as long as the process: frozen, no full
    pass walks it again; young passes become rarer (``GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main() -> int:
    settings = StreamSettings()
    settings.require_secrets("stream")
    app = build_stream(settings)
    tune_gc()
    worker = faust.Worker(app, loglevel="INFO", quiet=True, logging_config=logging_config())
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
