"""Replication of every topic eventpipe creates comes from settings (issue 17, part 3)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eventpipe.kafka_admin import topic_specs
from eventpipe.settings import Settings


def test_local_default_is_one_replica_and_one_in_sync() -> None:
    for spec in topic_specs(Settings()):
        assert spec.replication_factor == 1, spec.name
        assert spec.topic_configs["min.insync.replicas"] == "1", spec.name


def test_a_cluster_gets_the_configured_replication_on_every_topic() -> None:
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    specs = topic_specs(settings)
    names = {s.name for s in specs}
    assert names == {settings.events_topic, settings.deadletter_topic, settings.batches_topic}
    for spec in specs:
        assert spec.replication_factor == 3, spec.name
        assert spec.topic_configs["min.insync.replicas"] == "2", spec.name
        assert "retention.bytes" in spec.topic_configs, spec.name  # retention kept beside it


def test_min_insync_above_the_replication_factor_is_refused_clearly() -> None:
    with pytest.raises(ValidationError, match=r"MIN_INSYNC_REPLICAS .*cannot exceed"):
        Settings(kafka_replication_factor=1, kafka_min_insync_replicas=2)


def test_env_example_documents_both_settings() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert "EVENTPIPE_KAFKA_REPLICATION_FACTOR=1" in text
    assert "EVENTPIPE_KAFKA_MIN_INSYNC_REPLICAS=1" in text


def test_a_cluster_still_starting_is_waited_for_other_errors_are_not() -> None:
    from kafka import errors

    from eventpipe.kafka_admin import _transient

    # seen in CI: a fresh 3-node cluster named controller 2 before the client's metadata had it
    assert _transient(errors.UnknownBrokerIdError(2))
    assert _transient(errors.InvalidReplicationFactorError())  # fewer brokers registered yet
    assert _transient(errors.NodeNotReadyError(1))  # kafka-python's own retriable errors
    assert not _transient(errors.TopicAuthorizationFailedError())
    assert not _transient(errors.InvalidConfigurationError())
