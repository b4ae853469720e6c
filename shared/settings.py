"""Settings for every service: one pydantic-settings class, prefix ``EVENTPIPE_``.

Defaults are the local stack of DESIGN.md. Nothing is read at import time: call
``get_settings()`` in an entrypoint (app factory, CLI) and pass the object down.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import (
    Field,
    FieldSerializationInfo,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventpipe.errors import ConfigurationError
from eventpipe.production import SERVICE_SECRETS, weak_secrets


def parse_write_keys(raw: str) -> dict[str, str]:
    """``"key1:source1,key2:source2"`` -> ``{"key1": "source1", ...}``."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, source = item.partition(":")
        if not sep or not key or not source:
            raise ValueError(f"write key entry must be 'key:source', got an entry of {len(item)} chars")
        keys[key] = source
    return keys


# Rate limits when EVENTPIPE_ENV=production leaves them unset: per write key, per process.
PRODUCTION_RATE_LIMIT_PER_S = 2000.0
PRODUCTION_RATE_LIMIT_BYTES_PER_S = 4 * 1024 * 1024.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTPIPE_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"

    # ingest
    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(8080, ge=1, le=65535)
    ingest_ops_port: int = Field(
        8081, ge=1, le=65535, description="production: /metrics, /docs, /openapi.json only here (internal)"
    )
    write_keys: SecretStr = SecretStr("dev-write-key:dev")
    rate_limit_per_s: float | None = Field(
        None, ge=0, description="events/s per write key and process; 0 = off; unset: on in production"
    )
    rate_limit_burst: float = Field(0.0, ge=0, description="bucket size; 0 = 2 s of rate")
    rate_limit_bytes_per_s: float | None = Field(
        None, ge=0, description="body bytes/s per write key and process; 0 = off; unset: on in production"
    )
    rate_limit_bytes_burst: float = Field(0.0, ge=0, description="bucket size; 0 = 2 s of rate")
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    max_batch_context_bytes: int = Field(8 * 1024, ge=0, description="a batch context is copied per event")
    max_batch_events: int = 2500
    max_import_batch_events: int = Field(
        10_000, ge=1, description="events per /v1/import batch (the byte limits still apply)"
    )
    max_json_depth: int = 32
    tracking_plan: str | None = Field(
        None, description="JSON Schemas per track event name: a folder of *.json or one YAML file"
    )
    tracking_plan_modes: str = Field(
        "", description="source:reject|flag,...: what a violation does per source (unlisted: unchecked)"
    )
    publish_timeout_s: float = Field(10.0, gt=0, description="below any HTTP client's timeout")
    body_read_timeout_s: float = Field(30.0, gt=0, description="slow-body (slowloris) cut-off -> 408")
    ingest_max_concurrency: int = Field(2048, ge=1, description="requests in flight; beyond: 503")
    header_read_timeout_s: float = Field(
        10.0, gt=0, description="a connection's request headers must arrive within this (else 408)"
    )
    kafka_client: Literal["kafka-python", "confluent"] = Field(
        "confluent",
        description="collector's producer: confluent (librdkafka, the default) or kafka-python (pure Python)",
    )
    kafka_compression: Literal["none", "lz4", "gzip"] = Field(
        "lz4", description="collector's producer compression (make bench measures lz4 vs none)"
    )
    metrics_event_names: str = Field(
        "Order Completed,Signed Up", description="comma-separated event names always given their own label"
    )
    metrics_top_events: int = Field(50, ge=0, le=500, description="further event names labelled; rest: other")
    metrics_event_min_count: int = Field(
        5, ge=1, description="events of a name in a 10-minute window before it may take a label slot"
    )

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "events"
    deadletter_topic: str = "events-rejected"
    batches_topic: str = "batches"
    events_partitions: int = Field(6, ge=1)
    kafka_retention_bytes: int = Field(
        1024**3, ge=1024 * 1024, description="per partition, on top of 7 days: a flood cannot fill the disk"
    )
    # every topic eventpipe creates (events, dead letters, batches, the stream's changelog);
    # 1 on the local single broker, 3 and 2 on a cluster (docs/runbook.md, "Replicated Kafka")
    kafka_replication_factor: int = Field(1, ge=1, description="replicas per partition of every topic")
    kafka_min_insync_replicas: int = Field(
        1, ge=1, description="replicas that must have an acks=all write; <= the replication factor"
    )

    # S3
    s3_endpoint: str | None = "http://127.0.0.1:9000"
    s3_bucket: str = "eventpipe"
    s3_region: str = "us-east-1"
    s3_access_key: str = "S3RVER"
    s3_secret_key: SecretStr = SecretStr("S3RVER")
    s3_prefix: str = Field("", description="key prefix inside the bucket (tests isolate with it)")

    # stream
    stream_web_host: str = "127.0.0.1"
    stream_web_port: int = Field(6066, ge=1, le=65535)
    stream_app_id: str = "eventpipe-stream"
    # 2 s: POST -> queryable p99 within 5 s at 1,000 events/s (docs/benchmarks.md, freshness)
    flush_interval_s: float = Field(2.0, gt=0, le=10.0)
    archive_max_events: int = Field(50_000, ge=1)
    archive_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    dedup_window_hours: int = Field(48, ge=48)
    # the stream forgets an assignment this many days (data time) after its first exposure
    # (docs/stream.md "Assignments"); the warehouse keeps every assignment
    assignment_window_days: int = Field(90, ge=2)
    # where the worker's records come from (docs/stream.md "Records from librdkafka"): a
    # librdkafka consumer assigned the partitions the group gives it, or the group's own
    # aiokafka consumer. librdkafka's prefetch queue: at most 16 MB (64 MB, librdkafka's
    # default, peaked the worker at 790 MB vs 600), at least 500k messages per partition
    # (100k fetched less); over the bound it fetches again after 100 ms (1000 ms with 16 MB
    # starved it: ~51k events/s; 0 spun its threads: +4 CPU-us/event)
    stream_record_source: Literal["librdkafka", "aiokafka"] = "librdkafka"
    stream_fetch_queued_min_messages: int = Field(500_000, ge=1)
    stream_fetch_queued_max_kbytes: int = Field(16_384, ge=1)
    stream_fetch_queue_backoff_ms: int = Field(100, ge=0)

    # warehouse / loader
    # a str (psycopg2 takes it as is), kept out of repr() so it is never logged by accident
    warehouse_dsn: str = Field("postgresql://eventpipe:eventpipe@127.0.0.1:5432/eventpipe", repr=False)
    warehouse_dialect: Literal["postgres", "redshift"] = "postgres"
    warehouse_schema: str = "public"
    redshift_iam_role: str | None = None
    # the data tests' dbt (docs/checks.md): its own venv, as scripts/stack.sh installs it
    dbt_executable: str = ".local/dbt/bin/dbt"
    loader_port: int = Field(8082, ge=1, le=65535)
    loader_host: str = "127.0.0.1"  # metrics listener; 0.0.0.0 in containers
    unloaded_alert_minutes: int = 10
    loader_retention_days: int = Field(
        14,
        ge=10,
        description="the loader prunes ledger rows loaded, and deltas / final_batches of days, older "
        "than this; it never lists or loads objects dated older than this minus 2 days",
    )
    reprocess_lateness_days: int = Field(1, ge=0)
    reprocess_hour_utc: int = Field(2, ge=0, le=23)
    # local: mrjob's subprocess runner, which sorts between steps with GNU sort on disk, so a
    # day never has to fit in memory; inline sorts in memory (small days, tests)
    reprocess_runner: Literal["inline", "local", "hadoop", "emr"] = "local"
    reprocess_sort_buffer_mb: int = Field(
        256, ge=16, description="GNU sort's memory per sort of the local runner (sort -S); spills to disk"
    )
    reprocess_tasks: int | None = Field(
        None, ge=1, description="local runner: tasks and packing processes at once (default: cores)"
    )
    reprocess_lookback_days: int = Field(3, ge=1, description="closed days the scheduler re-checks")
    reprocess_schedule_enabled: bool = Field(True, description="the loader runs the nightly itself")
    reprocess_mrjob_conf: str | None = Field(None, description="mrjob.conf for -r emr/hadoop")
    reprocess_engine: Literal["mrjob", "spark"] = Field(
        "mrjob", description="the nightly job's engine (spark: pip install 'eventpipe[spark]')"
    )
    spark_master: str = Field("local[2]", description="the Spark engine's master (in-process driver)")
    spark_shuffle_partitions: int = Field(4, ge=1, description="partitions of each Spark shuffle")
    spark_driver_memory: str = Field("1g", pattern=r"^\d+[kmgt]$", description="e.g. 1g (JVM heap)")
    verify_interval_s: float = Field(300.0, ge=0, description="verify today every N s; 0: off")
    emr_instance_type: str | None = Field(None, description="overrides mrjob.conf's instance_type")
    emr_core_instances: int | None = Field(None, ge=1, description="overrides num_core_instances")
    emr_log_uri: str | None = Field(None, description="s3:// URI for EMR logs (cloud_log_dir)")

    @model_validator(mode="after")
    def _check_replication(self) -> Settings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"EVENTPIPE_KAFKA_MIN_INSYNC_REPLICAS ({self.kafka_min_insync_replicas}) cannot exceed "
                f"EVENTPIPE_KAFKA_REPLICATION_FACTOR ({self.kafka_replication_factor}): every acks=all "
                "write would fail"
            )
        return self

    @field_validator("write_keys")
    @classmethod
    def _check_write_keys(cls, value: SecretStr) -> SecretStr:
        if not parse_write_keys(reveal(value)):
            raise ValueError("at least one write key is required (EVENTPIPE_WRITE_KEYS=key:source)")
        return value

    @model_validator(mode="after")
    def _no_weak_secrets_in_production(self) -> Settings:
        """Every secret given is judged by rule; the ones a service needs but left at their
        development default are refused by ``require_secrets`` when that service starts."""
        if self.env == "production":
            given = self.model_fields_set
            problems = weak_secrets(
                list(self.write_key_map) if "write_keys" in given else None,
                reveal(self.s3_secret_key) if "s3_secret_key" in given else None,
                self.warehouse_dsn if "warehouse_dsn" in given else None,
            )
            if problems:
                raise ValueError("refused with EVENTPIPE_ENV=production: " + "; ".join(problems))
        return self

    def require_secrets(self, service: str) -> None:
        """In production, the secrets ``service`` uses must be set (never the development defaults)."""
        if self.env != "production":
            return
        missing = [name for name in SERVICE_SECRETS[service] if name not in self.model_fields_set]
        if missing:
            names = ", ".join(f"EVENTPIPE_{name.upper()}" for name in missing)
            raise ConfigurationError(f"{service} with EVENTPIPE_ENV=production needs {names} set")

    @property
    def effective_rate_limit_per_s(self) -> float:
        if self.rate_limit_per_s is not None:
            return self.rate_limit_per_s
        return PRODUCTION_RATE_LIMIT_PER_S if self.env == "production" else 0.0

    @property
    def effective_rate_limit_bytes_per_s(self) -> float:
        if self.rate_limit_bytes_per_s is not None:
            return self.rate_limit_bytes_per_s
        return PRODUCTION_RATE_LIMIT_BYTES_PER_S if self.env == "production" else 0.0

    @field_serializer("write_keys", "s3_secret_key", when_used="json")
    def _secret_json(self, value: SecretStr | str, info: FieldSerializationInfo) -> str:
        """Masked in JSON, unless ``model_dump_json(context={"reveal_secrets": True})`` (a child
        process that must see the same settings)."""
        if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
            return reveal(value)
        return "**********"

    def environment(self) -> dict[str, str]:
        """``EVENTPIPE_*`` variables that make a child process see exactly these settings."""
        env = {}
        for name, value in self.model_dump().items():
            if value is not None:
                env[f"EVENTPIPE_{name.upper()}"] = (
                    reveal(value) if isinstance(value, SecretStr) else str(value)
                )
        return env

    @property
    def write_key_map(self) -> dict[str, str]:
        return parse_write_keys(reveal(self.write_keys))


def reveal(value: SecretStr | str) -> str:
    """A secret's text (``model_copy(update=…)`` in tests can leave a plain str)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
