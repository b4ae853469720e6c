"""The composition root: the one place that creates adapters and hands them to services.

Each builder takes the settings plus, optionally, the adapters a test (or another runtime)
wants instead of the real ones -- Kafka clients, the S3 client, the warehouse and its
dialect -- and a ``Clock``. Services never construct what they use: the entry points
(``eventpipe ingest|stream|loader``, ``eventpipe reprocess|verify``) call these builders.
Imports are local so that building one service does not import the others' libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eventpipe.clock import Clock, SystemClock
from eventpipe.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from eventpipe.ingest.publisher import Publisher
    from eventpipe.loader.dialects import Dialect
    from eventpipe.loader.discovery import Notices
    from eventpipe.loader.metrics import LoaderMetrics
    from eventpipe.loader.reprocess.pipeline import ReprocessAdapters
    from eventpipe.loader.runner import Limits, Loader
    from eventpipe.loader.warehouse import Warehouse
    from eventpipe.stream.app import StreamApp
    from eventpipe.stream.clients import Connect, ConnectLetters
    from eventpipe.stream.metrics import StreamMetrics
    from eventpipe.stream.settings import StreamSettings

# application_name -> a Warehouse with a session of its own (one per run or check)
WarehouseFactory = Callable[[str], "Warehouse"]


def build_ingest(
    settings: Settings,
    *,
    publisher_factory: Callable[[Settings], Publisher] | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The collector's ASGI app; its Kafka publisher is made in the app's lifespan."""
    from eventpipe.ingest.app import create_app
    from eventpipe.ingest.publisher import create_publisher

    return create_app(settings, publisher_factory or create_publisher, clock or SystemClock())


def build_stream(
    settings: StreamSettings,
    *,
    connect: Connect | None = None,
    connect_letters: ConnectLetters | None = None,
    metrics: StreamMetrics | None = None,
    clock: Clock | None = None,
) -> StreamApp:
    """The Faust app of a stream worker; ``connect`` makes its Kafka/S3/changelog clients and
    ``connect_letters`` the dead-letter archiver's, on the worker's event loop (default: the
    real ones, per the settings)."""
    from eventpipe.stream.app import create_app
    from eventpipe.stream.clients import deadletter_connect, stream_connect
    from eventpipe.stream.metrics import StreamMetrics

    metrics = metrics or StreamMetrics()
    connect = connect or stream_connect(settings, metrics, conditional_put=settings.s3_conditional_put)
    return create_app(
        settings,
        metrics=metrics,
        connect=connect,
        connect_letters=connect_letters or deadletter_connect(settings, metrics),
        clock=clock or SystemClock(),
    )


def build_s3(settings: Settings) -> Any:
    """The S3 client (boto3) of the settings: the loader, the nightly job, the Redshift
    dialect and the commands that read S3 (``eventpipe rejected``, ``eventpipe status``)
    get theirs from here."""
    from eventpipe.s3 import s3_client

    return s3_client(settings)


def build_dialect(settings: Settings, s3: Any = None) -> Dialect:
    """The warehouse dialect of the settings (Redshift writes its COPY manifests with ``s3``)."""
    from eventpipe.loader.dialects import get_dialect

    if settings.warehouse_dialect == "redshift":
        return get_dialect(
            "redshift",
            iam_role=settings.redshift_iam_role,
            bucket=settings.s3_bucket,
            s3=s3 if s3 is not None else build_s3(settings),
            manifest_prefix=f"{settings.s3_prefix}manifests/",
        )
    return get_dialect("postgres")


def build_warehouse(
    settings: Settings,
    *,
    dialect: Dialect | None = None,
    application_name: str = "eventpipe-loader",
    on_retry: Callable[[BaseException], None] | None = None,
    attempts: int = 8,
    max_wait_s: float = 10.0,
) -> Warehouse:
    from eventpipe.loader.warehouse import Warehouse

    return Warehouse(
        settings,
        dialect or build_dialect(settings),
        application_name=application_name,
        on_retry=on_retry,
        attempts=attempts,
        max_wait_s=max_wait_s,
    )


def warehouse_factory(settings: Settings, dialect: Dialect | None = None) -> WarehouseFactory:
    chosen = dialect or build_dialect(settings)
    return lambda name: build_warehouse(settings, dialect=chosen, application_name=name)


def build_loader(
    settings: Settings,
    *,
    warehouse: Warehouse | None = None,
    s3: Any = None,
    notices: Notices | None = None,
    metrics: LoaderMetrics | None = None,
    limits: Limits | None = None,
    before_commit: Callable[[], None] | None = None,
    clock: Clock | None = None,
) -> Loader:
    """The loader; ``notices`` None reads no ``batches`` topic (S3 listing finds every batch)."""
    from eventpipe.loader.metrics import LoaderMetrics
    from eventpipe.loader.runner import Loader, retry_counter

    metrics = metrics or LoaderMetrics()
    s3 = s3 if s3 is not None else build_s3(settings)
    if warehouse is None:
        warehouse = build_warehouse(
            settings, dialect=build_dialect(settings, s3), on_retry=retry_counter(metrics)
        )
    return Loader(
        settings,
        warehouse=warehouse,
        s3=s3,
        metrics=metrics,
        clock=clock or SystemClock(),
        notices=notices,
        limits=limits,
        before_commit=before_commit,
    )


def build_reprocess(
    settings: Settings, *, s3: Any = None, dialect: Dialect | None = None
) -> ReprocessAdapters:
    """What one nightly run uses: the S3 client, the dialect, a warehouse session per run."""
    from eventpipe.loader.reprocess.pipeline import ReprocessAdapters

    s3 = s3 if s3 is not None else build_s3(settings)
    dialect = dialect or build_dialect(settings, s3)
    return ReprocessAdapters(s3=s3, dialect=dialect, warehouse=warehouse_factory(settings, dialect))
