"""Entry point of ``eventpipe stream``: one Faust worker running the stream app."""

from __future__ import annotations

import faust

from eventpipe.bootstrap import build_stream
from eventpipe.gctune import freeze_and_tune
from eventpipe.logs import JsonFormatter
from eventpipe.stream.settings import StreamSettings

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


def main() -> int:
    settings = StreamSettings()
    settings.require_secrets("stream")
    app = build_stream(settings)
    freeze_and_tune(per_cut=True)
    worker = faust.Worker(app, loglevel="INFO", quiet=True, logging_config=logging_config())
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
