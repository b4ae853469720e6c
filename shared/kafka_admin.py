"""Kafka topic creation (adapter). Partition counts are explicit: the stream's
parallelism and the per-partition S3 object names depend on them."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import (
    InvalidReplicationFactorError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownBrokerIdError,
)

from eventpipe.settings import Settings

WEEK_MS = 7 * 24 * 3600 * 1000


def replication_configs(settings: Settings) -> dict[str, str]:
    """Topic configs every eventpipe topic carries: with acks=all, a write is acknowledged
    once ``min.insync.replicas`` replicas have it, so a broker can die without losing it."""
    return {"min.insync.replicas": str(settings.kafka_min_insync_replicas)}


def topic_specs(settings: Settings) -> list[NewTopic]:
    # a week by time (an S3 outage buffer), and bounded by size too: a flood must not fill
    # the broker's disk, which would stop it for every producer (retention.bytes is per partition)
    keep_a_week = {"retention.ms": str(WEEK_MS), "retention.bytes": str(settings.kafka_retention_bytes)}
    configs = {**keep_a_week, **replication_configs(settings)}
    rf = settings.kafka_replication_factor
    return [
        NewTopic(settings.events_topic, settings.events_partitions, rf, topic_configs=configs),
        NewTopic(settings.deadletter_topic, 3, rf, topic_configs=configs),
        NewTopic(settings.batches_topic, 3, rf, topic_configs=configs),
    ]


def _connect(bootstrap: str, wait_s: float) -> KafkaAdminClient:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="eventpipe-admin")
        except KafkaError:  # no broker answered yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


# A cluster that has just started can name a controller whose registration the admin client's
# metadata does not hold yet (UnknownBrokerIdError), or count fewer live brokers than the
# replication factor: both pass within seconds, so they are retried like retriable errors.
STARTING_UP = (UnknownBrokerIdError, InvalidReplicationFactorError)


def _transient(error: KafkaError) -> bool:
    return bool(getattr(error, "retriable", False)) or isinstance(error, STARTING_UP)


def create_topics(settings: Settings, wait_s: float = 30.0, prefix: str = "") -> list[str]:
    """Create missing topics; returns the names created. ``prefix`` isolates tests. Errors of
    a cluster still starting are retried (with fresh metadata) until ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _create_missing(settings, max(deadline - time.monotonic(), 0.0), prefix)
        except KafkaError as error:
            if not _transient(error) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _create_missing(settings: Settings, wait_s: float, prefix: str) -> list[str]:
    admin = _connect(settings.kafka_bootstrap, wait_s)
    try:
        existing = set(admin.list_topics())
        wanted = []
        for spec in topic_specs(settings):
            spec.name = prefix + spec.name
            if spec.name not in existing:
                wanted.append(spec)
        created = []
        for spec in wanted:
            try:
                admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
