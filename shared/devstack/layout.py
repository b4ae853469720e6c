"""Where the local stack lives and listens: ONE place for its ports and directories.

Every address comes from the settings the services themselves read (``EVENTPIPE_*``,
``.env``): Kafka from ``EVENTPIPE_KAFKA_BOOTSTRAP``, the S3 API server from
``EVENTPIPE_S3_ENDPOINT``, PostgreSQL from ``EVENTPIPE_WAREHOUSE_DSN``, the services from
their ``*_PORT`` settings. What only the stack has is ``EVENTPIPE_STACK_*``. So a second
stack runs beside the first by setting those variables (other ports, another data dir),
and the services it starts see the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventpipe.settings import Settings

# the checkout: deploy/ (Kafka and Prometheus configuration) and .venv/ live there
ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("kafka", "postgres", "s3", "prometheus", "ingest", "stream", "loader")


class StackSettings(BaseSettings):
    """What only the local stack has (``EVENTPIPE_STACK_*``)."""

    model_config = SettingsConfigDict(env_prefix="EVENTPIPE_", env_file=".env", extra="ignore")

    stack_dir: Path = Field(
        Path(".local"),
        validation_alias=AliasChoices("EVENTPIPE_STACK_DIR", "EVENTPIPE_LOCAL_DIR"),
        description="data, logs and pid files (relative: to the checkout; EVENTPIPE_LOCAL_DIR too)",
    )
    stack_kafka_controller_port: int = Field(9093, ge=1, le=65535, description="KRaft controller")
    stack_prometheus_port: int = Field(9090, ge=1, le=65535)
    stack_kafka_heap: str = Field("1g", pattern=r"^[0-9]+[mg]$", description="the broker JVM's -Xmx")
    stack_kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="KRaft nodes (make up KAFKA_BROKERS=3); node n: ports +100·(n-1)",
    )


@dataclass(frozen=True)
class Layout:
    """The stack's directories and every port, resolved once."""

    settings: Settings
    stack: StackSettings
    root: Path = ROOT

    @classmethod
    def load(cls) -> Layout:
        return cls(Settings(), StackSettings())

    @property
    def local(self) -> Path:
        folder = self.stack.stack_dir
        return (folder if folder.is_absolute() else self.root / folder).resolve()

    @property
    def installs(self) -> Path:
        """The checkout's downloaded tools (Kafka's jars, s3rver), shared by its stacks."""
        return self.root / ".local"

    @property
    def run(self) -> Path:
        return self.local / "run"

    @property
    def logs(self) -> Path:
        return self.local / "log"

    @property
    def venv(self) -> Path:
        return self.root / ".venv"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @property
    def kafka_port(self) -> int:
        return port_of("//" + self.settings.kafka_bootstrap.split(",")[0], 9092)

    @property
    def s3_port(self) -> int:
        return port_of(self.settings.s3_endpoint or "", 9000)

    @property
    def postgres_port(self) -> int:
        return port_of(self.settings.warehouse_dsn, 5432)

    def brokers(self) -> list[str]:
        """The Kafka nodes' component names: ``kafka``, then ``kafka-2`` … ``kafka-N``."""
        return ["kafka"] + [f"kafka-{n}" for n in range(2, self.stack.stack_kafka_brokers + 1)]

    def components(self) -> list[str]:
        return [*self.brokers(), *COMPONENTS[1:]]

    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by what listens (``status`` prints them)."""
        s = self.settings
        nodes = {}
        for n, name in enumerate(self.brokers()):
            nodes[name] = self.kafka_port + 100 * n
            nodes[f"{name} controller"] = self.stack.stack_kafka_controller_port + 100 * n
        return {
            **nodes,
            "postgres": self.postgres_port,
            "s3": self.s3_port,
            "prometheus": self.stack.stack_prometheus_port,
            "ingest": s.ingest_port,
            "stream": s.stream_web_port,
            "loader": s.loader_port,
        }


def port_of(url: str, default: int) -> int:
    """The port of a URL or DSN (``postgresql://u:p@host:5432/db``, ``//host:9092``)."""
    parsed = urlparse(url)
    if parsed.hostname not in (None, "127.0.0.1", "localhost"):
        # the host only: a DSN carries a password
        raise ValueError(f"the local stack listens on loopback only, not on {parsed.hostname!r}")
    return parsed.port or default
