"""The Faust app of the stream worker, built by a factory (nothing is created at import).

Faust provides the process: worker lifecycle and signal handling, the service tree that
starts and stops the pipeline, and the web server on ``stream_web_port`` serving the
Prometheus ``/metrics`` page. Faust's own consumer and producer are not booted: the
pipeline (``pipeline.py``, whose docstring says why) owns its Kafka clients, so the
worker joins exactly one consumer group, ``stream_app_id``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy
from prometheus_client import generate_latest

from eventpipe.clock import Clock
from eventpipe.settings import Settings
from eventpipe.stream.clients import Connect, ConnectLetters
from eventpipe.stream.deadletters import DeadLetterArchiver
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.pipeline import Pipeline

# aiohttp refuses a charset inside content_type; Prometheus text format 0.0.4 is UTF-8 anyway
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


class _WebOnly(BootStrategy):
    enable_kafka = False  # the pipeline has its own consumer and producer
    enable_web = True
    enable_sensors = False


class StreamApp(faust.App):
    BootStrategy = _WebOnly
    pipeline: Pipeline
    archiver: DeadLetterArchiver
    metrics: StreamMetrics


def create_app(
    settings: Settings,
    *,
    metrics: StreamMetrics,
    connect: Connect,
    connect_letters: ConnectLetters,
    clock: Clock | None = None,
) -> StreamApp:
    """The app around the pipeline and the dead-letter archiver; ``eventpipe.bootstrap.build_stream``
    is the caller that decides the adapters (``connect``, ``connect_letters``) and the clock."""
    datadir = Path(tempfile.gettempdir()) / "eventpipe-stream" / settings.stream_app_id
    # the whole path, race-free: another worker may remove or create the parent meanwhile
    datadir.mkdir(parents=True, exist_ok=True)
    app = StreamApp(
        settings.stream_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        web_enabled=True,
        web_bind=settings.stream_web_host,  # 0.0.0.0 in containers
        web_host=settings.stream_web_host,
        web_port=settings.stream_web_port,
        autodiscover=False,
        store="memory://",
        # Faust creates its data directory at start-up; no table lives there (state is in
        # the changelog topic), so keep it out of the working directory.
        datadir=str(datadir),
    )
    app.metrics = metrics
    app.pipeline = Pipeline(settings, metrics, clock, connect, loop=app.loop, beacon=app.beacon)
    app.service(app.pipeline)  # type: ignore[arg-type]  # faust's stub wants the class; it takes either
    app.archiver = DeadLetterArchiver(
        settings, metrics, connect_letters, clock, loop=app.loop, beacon=app.beacon
    )
    app.service(app.archiver)  # type: ignore[arg-type]

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(app.metrics.registry), content_type=METRICS_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"ok": True, "partitions": app.pipeline.owned()})

    return app
