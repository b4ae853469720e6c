"""Shared fixtures. Each test gets its own Kafka topics, S3 key prefix and warehouse
schema, so tests never collide (with each other or with a running local stack).

A test's tier is its directory (``tests/unit``, ``tests/integration``, ``tests/e2e``,
``tests/faults``), each one make target; the directory also marks it, so ``-m`` selects
a tier from anywhere (``pytest tests -m "not e2e"``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from eventpipe.settings import Settings
from tests.stack import Endpoints, isolated_settings, resolve

# Property tests judge correctness, not speed. On a fresh clone Hypothesis first builds
# its Unicode tables (cached in .hypothesis/), so the first st.text() draw of the run took
# seconds and failed the too_slow health check; with the stack running beside the tests
# any example can also overrun the 200 ms deadline. Neither says anything about the code.
hypothesis_settings.register_profile(
    "eventpipe", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
hypothesis_settings.load_profile("eventpipe")

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else None
        if tier in TIERS:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    with ExitStack() as stack:
        yield resolve(stack)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(endpoints: Endpoints, unique: str) -> Settings:
    """Settings pointing at the real components, with per-test topics and S3 prefix."""
    return isolated_settings(endpoints, unique)


@pytest.fixture
def topics(settings: Settings) -> Iterator[Settings]:
    """Creates the per-test topics (deleted again afterwards)."""
    from kafka import KafkaAdminClient

    from eventpipe.kafka_admin import create_topics

    create_topics(settings, wait_s=30)
    yield settings
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.delete_topics([settings.events_topic, settings.deadletter_topic, settings.batches_topic])
    except Exception:  # best effort: a leftover test topic harms nothing
        pass
    finally:
        admin.close()


@pytest.fixture
def s3(settings: Settings) -> Any:
    from eventpipe.s3 import s3_client

    client = s3_client(settings)
    try:
        client.head_bucket(Bucket=settings.s3_bucket)
    except Exception:
        client.create_bucket(Bucket=settings.s3_bucket)
    return client


@pytest.fixture
def pg_schema(settings: Settings) -> Iterator[str]:
    """A fresh warehouse schema for this test, dropped afterwards."""
    schema = settings.warehouse_schema
    conn = psycopg2.connect(settings.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    yield schema
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()
