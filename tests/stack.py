"""Where the tests find the real components.

Order of preference, per component: the endpoint in the environment
(``EVENTPIPE_KAFKA_BOOTSTRAP``, ``EVENTPIPE_S3_ENDPOINT``, ``EVENTPIPE_WAREHOUSE_DSN``),
else a testcontainers container when a Docker engine answers, else the natively started
local stack (``scripts/stack.sh up``, which ``make test`` runs first).
"""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from urllib.parse import urlparse

from eventpipe.settings import Settings


def local_addresses() -> dict[str, str]:
    """Where the local stack listens: the settings the stack itself starts from (their
    defaults, ``EVENTPIPE_*``, ``.env``; eventpipe.devstack.layout), never a copy of them."""
    settings = Settings()
    return {
        "kafka": settings.kafka_bootstrap,
        "s3": settings.s3_endpoint or "",
        "warehouse": settings.warehouse_dsn,
    }


@dataclass
class Endpoints:
    kafka_bootstrap: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    warehouse_dsn: str
    origin: str


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:  # no engine, no socket, no permission: all mean "not usable"
        return False


def reachable(host: str, port: int) -> bool:
    with suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def from_environment() -> Endpoints | None:
    kafka = os.environ.get("EVENTPIPE_KAFKA_BOOTSTRAP")
    s3 = os.environ.get("EVENTPIPE_S3_ENDPOINT")
    dsn = os.environ.get("EVENTPIPE_WAREHOUSE_DSN")
    if not (kafka and s3 and dsn):
        return None
    return Endpoints(
        kafka,
        s3,
        os.environ.get("EVENTPIPE_S3_ACCESS_KEY", "S3RVER"),
        os.environ.get("EVENTPIPE_S3_SECRET_KEY", "S3RVER"),
        dsn,
        "environment",
    )


def from_containers(stack: ExitStack) -> Endpoints:  # pragma: no cover - needs Docker
    from testcontainers.kafka import KafkaContainer
    from testcontainers.minio import MinioContainer
    from testcontainers.postgres import PostgresContainer

    kafka = stack.enter_context(KafkaContainer().with_kraft())
    minio = stack.enter_context(MinioContainer())
    pg = stack.enter_context(
        PostgresContainer(
            "postgres:16", username="eventpipe", password="eventpipe", dbname="eventpipe", driver=None
        )
    )
    minio.get_client().make_bucket("eventpipe")
    cfg = minio.get_config()
    return Endpoints(
        kafka.get_bootstrap_server(),
        f"http://{cfg['endpoint']}",
        cfg["access_key"],
        cfg["secret_key"],
        pg.get_connection_url(),
        "testcontainers",
    )


def local_stack() -> Endpoints:
    local = local_addresses()
    missing = [
        name
        for name, url in (
            ("kafka", "//" + local["kafka"].split(",")[0]),
            ("s3", local["s3"]),
            ("warehouse", local["warehouse"]),
        )
        if not reachable(urlparse(url).hostname or "127.0.0.1", urlparse(url).port or 0)
    ]
    if missing:
        raise RuntimeError(
            f"local stack not running ({', '.join(missing)}): run `scripts/stack.sh up` or `make test`"
        )
    return Endpoints(local["kafka"], local["s3"], "S3RVER", "S3RVER", local["warehouse"], "local stack")


def resolve(stack: ExitStack) -> Endpoints:
    found = from_environment()
    if found:
        return found
    if docker_engine_answers():
        return from_containers(stack)
    return local_stack()


def isolated_settings(endpoints: Endpoints, unique: str) -> Settings:
    """Settings pointing at the real components, with topics, S3 prefix, schema and consumer
    group of their own (named after ``unique``), so tests never collide."""
    return Settings(
        kafka_bootstrap=endpoints.kafka_bootstrap,
        s3_endpoint=endpoints.s3_endpoint,
        s3_access_key=endpoints.s3_access_key,
        s3_secret_key=endpoints.s3_secret_key,
        s3_prefix=f"test/{unique}/",
        warehouse_dsn=endpoints.warehouse_dsn,
        warehouse_schema=f"t_{unique}",
        events_topic=f"t-{unique}-events",
        deadletter_topic=f"t-{unique}-events-rejected",
        batches_topic=f"t-{unique}-batches",
        stream_app_id=f"t-{unique}-stream",
    )
