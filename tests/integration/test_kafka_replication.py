"""Every topic eventpipe creates on the real broker carries the configured replication:
the per-test topics and the stream's changelog (issue 17, part 3; one broker here, so the
factor is 1 -- a cluster sets 3/2, docs/runbook.md "Replicated Kafka")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from eventpipe.settings import Settings
from eventpipe.stream.changelog import StateChangelog, changelog_topic

pytestmark = pytest.mark.integration


def topic_facts(settings: Settings, name: str) -> tuple[int, str]:
    """(replicas of partition 0, the topic's own min.insync.replicas)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="eventpipe-test")
    try:
        (described,) = admin.describe_topics([name])
        replicas = len(described["partitions"][0]["replica_nodes"])
        configs: Any = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        found = configs["topic"][name]["min.insync.replicas"]
        value = found["value"] if isinstance(found, dict) else found
        return replicas, str(value)
    finally:
        admin.close()


def test_the_topics_and_the_changelog_carry_the_replication_settings(topics: Settings) -> None:
    for name in (topics.events_topic, topics.deadletter_topic, topics.batches_topic):
        assert topic_facts(topics, name) == (1, "1"), name
    changelog = topics.model_copy(update={"stream_app_id": f"{topics.events_topic}-app"})
    name = changelog_topic(changelog)
    asyncio.run(StateChangelog(changelog, producer=None).ensure_topic(2))
    try:
        assert topic_facts(changelog, name) == (1, "1")
    finally:
        admin = KafkaAdminClient(bootstrap_servers=topics.kafka_bootstrap, client_id="eventpipe-test")
        try:
            admin.delete_topics([name])
        finally:
            admin.close()
