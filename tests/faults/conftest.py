"""Fixtures of the fault suite.

``make test`` (so CI) and ``make test-faults`` set ``EVENTPIPE_FAULTS=all`` and run every
scenario; a plain ``pytest tests`` runs only those marked ``ci`` (the fast subset).
Non-destructive scenarios use the shared local stack with per-test topics, S3 prefix and
warehouse schema; destructive ones (stopping Kafka, S3 or PostgreSQL) start their own
copies (``tests/support/components.py``) and never touch the shared stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventpipe.kafka_admin import create_topics
from eventpipe.settings import Settings
from tests.support.components import dedicated
from tests.support.faults.checker import Checker
from tests.support.pipeline import Pipeline, pipeline_settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ci: fast fault scenario, part of `make test`")
    config.addinivalue_line(
        "markers", "components(*names): dedicated kafka/kafka-cluster/s3/postgres for `isolated`"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("EVENTPIPE_FAULTS", "ci") == "all":
        return
    skip = pytest.mark.skip(reason="slow fault scenario: `make test-faults` (EVENTPIPE_FAULTS=all) runs it")
    for item in items:
        if "tests/faults/" in item.nodeid and "ci" not in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared(settings: Settings, topics: Settings, pg_schema: str, s3: object) -> Settings:
    """Per-test topics, prefix and schema on the shared local stack (non-destructive faults)."""
    return settings


@pytest.fixture
def isolated(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings on dedicated components: ``@pytest.mark.components("kafka", "postgres")``
    picks which are private (the rest stay shared); ``kafka-cluster`` is three KRaft nodes
    (``kafka-1`` … ``kafka-3``) with every topic at replication 3, min.insync.replicas 2.
    ``request.node.components`` holds them."""
    marker = request.node.get_closest_marker("components")
    names = marker.args if marker else ("kafka", "s3", "postgres")
    with dedicated(tmp_path, *names) as parts:
        update: dict[str, object] = {}
        brokers = [component.part.bootstrap for name, component in parts.items() if name.startswith("kafka")]
        if brokers:
            update["kafka_bootstrap"] = ",".join(brokers)
        if "kafka-cluster" in names:  # one broker may die: every write still reaches two
            update.update(kafka_replication_factor=3, kafka_min_insync_replicas=2)
        if "s3" in parts:
            update["s3_endpoint"] = parts["s3"].part.endpoint
        if "postgres" in parts:
            update["warehouse_dsn"] = parts["postgres"].part.dsn
        isolated_settings = settings.model_copy(update=update)
        create_topics(isolated_settings, wait_s=60)
        if "s3" not in parts:
            from eventpipe.s3 import s3_client

            client = s3_client(isolated_settings)
            try:
                client.head_bucket(Bucket=isolated_settings.s3_bucket)
            except Exception:
                client.create_bucket(Bucket=isolated_settings.s3_bucket)
        request.node.components = parts
        try:
            yield isolated_settings
        finally:
            if "postgres" not in parts:
                _drop_schema(isolated_settings)


def _drop_schema(settings: Settings) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(settings.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.warehouse_schema))
        )
    conn.close()


@pytest.fixture
def pipeline_factory(tmp_path: Path) -> Iterator[object]:
    """``pipeline_factory(settings)`` -> a ``Pipeline`` (nothing started); all stopped after."""
    made: list[Pipeline] = []

    def make(settings: Settings) -> Pipeline:
        pipe = Pipeline(pipeline_settings(settings), tmp_path)
        made.append(pipe)
        return pipe

    yield make
    for pipe in made:
        pipe.stop_all()


@pytest.fixture
def checker_for(tmp_path: Path, request: pytest.FixtureRequest) -> object:
    def make(settings: Settings, scenario: str | None = None) -> Checker:
        return Checker(settings, scenario or request.node.name, tmp_path)

    return make
