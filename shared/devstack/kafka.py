"""Kafka in KRaft mode for the local stack and the tests: one broker+controller, or a
cluster of them on loopback (``make up KAFKA_BROKERS=3``)."""

from __future__ import annotations

import base64
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from eventpipe.devstack.parts import DEPLOY, Part, port_open, run
from eventpipe.devstack.procs import StackError

# The G1 settings Kafka's own start script (bin/kafka-run-class.sh) gives the broker. G1's own
# default pause goal is 200 ms, and it sizes the young generation to fill it: under produce
# load the broker stopped for 50-110 ms at a time, and every acks=all publish in flight, so
# every collector request, waited each pause out (the open-loop p99, issue 16,
# docs/benchmarks.md "Open-loop tail").
KAFKA_GC_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
)


@dataclass
class Kafka(Part):
    """A KRaft broker+controller (deploy/kafka/server.properties.in): a single node, or node
    ``node_id`` of a cluster whose controllers are ``voters`` (``cluster_nodes``)."""

    home: Path
    port: int
    controller_port: int
    libs: Path
    heap: str = "1g"
    jvm_flags: tuple[str, ...] = ()
    node_id: int = 1
    voters: str = ""  # "1@127.0.0.1:9093,2@…"; empty: this node alone
    cluster_size: int = 1
    cluster_id: str = ""  # every node of a cluster is formatted with the same id
    name: ClassVar[str] = "kafka"
    start_timeout_s: ClassVar[float] = 120.0

    @property
    def conf(self) -> Path:
        return self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def java(self, heap: str) -> list[str]:
        if not (self.libs / ".complete").exists() and not any(self.libs.glob("kafka_*.jar")):
            raise StackError(f"Kafka is not installed in {self.libs}: run `scripts/stack.sh install`")
        if shutil.which("java") is None:
            raise StackError("java not found: run `scripts/stack.sh install`")
        log4j = DEPLOY / "kafka" / "log4j.properties"
        return ["java", "-Xms128m", f"-Xmx{heap}", *self.jvm_flags, f"-Dlog4j.configuration=file:{log4j}",
                "-cp", f"{self.libs}/*"]  # fmt: skip

    def prepare(self) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.properties(data))
        if (data / "meta.properties").exists():
            return
        tool = [*self.java("256m"), "kafka.tools.StorageTool"]
        cluster = self.cluster_id or run([*tool, "random-uuid"]).strip()
        run([*tool, "format", "-t", cluster, "-c", str(self.conf)])

    def properties(self, data: Path) -> str:
        internal_rf = min(self.cluster_size, 3)
        values = {
            "@PORT@": str(self.port),
            "@CONTROLLER_PORT@": str(self.controller_port),
            "@DATA@": str(data),
            "@NODE_ID@": str(self.node_id),
            "@VOTERS@": self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "@INTERNAL_RF@": str(internal_rf),
            "@INTERNAL_MIN_ISR@": str(min(internal_rf, 2)),
        }
        text = (DEPLOY / "kafka" / "server.properties.in").read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    def command(self) -> list[str]:
        return [*self.java(self.heap), *KAFKA_GC_FLAGS, "kafka.Kafka", str(self.conf)]

    def signature(self) -> str:
        return f"*kafka.Kafka {self.conf}*"

    def healthy(self) -> bool:
        """The broker answers metadata requests (its port opens well before that)."""
        if not port_open(self.port):
            return False
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        except Exception:  # NoBrokersAvailable and friends: not ready yet
            return False
        try:
            admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            admin.close()


def random_cluster_id() -> str:
    """A KRaft cluster id as ``StorageTool random-uuid`` prints it: url-safe base64 of a random
    UUID, never starting with "-" (the tool's argument parser would take it for an option and
    refuse to format, 1 time in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def cluster_nodes(
    home: Path, port: int, controller_port: int, libs: Path, size: int, cluster_id: str, **options: Any
) -> list[Kafka]:
    """The ``size`` nodes of a KRaft cluster on loopback: node n listens on ``port`` and
    ``controller_port`` plus 100·(n-1) and keeps its data in ``home`` (node 1) or
    ``home``-n; every node is a controller (a quorum of ``size``) and a broker."""
    step = 100
    homes = [home] + [home.with_name(f"{home.name}-{n}") for n in range(2, size + 1)]
    voters = ",".join(f"{n}@127.0.0.1:{controller_port + step * (n - 1)}" for n in range(1, size + 1))
    return [
        Kafka(
            homes[n - 1],
            port + step * (n - 1),
            controller_port + step * (n - 1),
            libs,
            node_id=n,
            voters=voters if size > 1 else "",
            cluster_size=size,
            cluster_id=cluster_id,
            **options,
        )
        for n in range(1, size + 1)
    ]
