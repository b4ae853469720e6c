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

LOCAL = {
    "kafka": "127.0.0.1:9092",
    "s3": "http://127.0.0.1:9000",
    "warehouse": "postgresql://eventpipe:eventpipe@127.0.0.1:5432/eventpipe",
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
    missing = [
        name
        for name, url in (
            ("kafka", "//" + LOCAL["kafka"]),
            ("s3", LOCAL["s3"]),
            ("warehouse", LOCAL["warehouse"]),
        )
        if not reachable(urlparse(url).hostname or "127.0.0.1", urlparse(url).port or 0)
    ]
    if missing:
        raise RuntimeError(
            f"local stack not running ({', '.join(missing)}): run `scripts/stack.sh up` or `make test`"
        )
    return Endpoints(LOCAL["kafka"], LOCAL["s3"], "S3RVER", "S3RVER", LOCAL["warehouse"], "local stack")


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
