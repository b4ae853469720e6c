"""The servers of the local stack, one recipe each: how to prepare its data directory, the
command that runs it, the glob its command line matches, and when it is healthy.

The same recipes serve ``make up`` (detached daemons with pid files, ``manager.py``) and
the tests' dedicated copies for destructive faults (children the test owns,
``tests/support/components.py``), so the two cannot drift apart again: same binaries,
same Kafka format-and-start, same s3rver options, same PostgreSQL auth as the services.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from eventpipe.devstack.procs import StackError, as_user

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def port_open(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@dataclass
class Part:
    """A server with a fixed port and data directory (subclasses fill in the recipe)."""

    name: ClassVar[str] = "part"
    user: ClassVar[str | None] = None  # run as this user when we are root
    stop_signal: ClassVar[int] = signal.SIGTERM
    start_timeout_s: ClassVar[float] = 60.0

    def prepare(self) -> None:
        """One-time, idempotent set-up of configuration and data directory."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def signature(self) -> str:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def after_start(self) -> None:
        """Once healthy: what the services expect inside it (roles, databases)."""


@dataclass
class S3Server(Part):
    """s3rver: objects are files under ``data``, so the raw archive survives restarts."""

    data: Path
    port: int
    script: Path
    bucket: str = "eventpipe"
    wrapper: tuple[str, ...] = ()  # e.g. faketime (make test-calendar)
    name: ClassVar[str] = "s3"
    start_timeout_s: ClassVar[float] = 30.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        if not self.script.exists():
            raise StackError(f"s3rver is not installed ({self.script}): run `scripts/stack.sh install`")
        self.data.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        where = ["-d", str(self.data), "-a", "127.0.0.1", "-p", str(self.port)]
        options = ["--silent", "--no-vhost-buckets", "--configure-bucket", self.bucket]
        return [*self.wrapper, "node", str(self.script), *where, *options]

    def env(self) -> dict[str, str]:
        # s3rver's ListObjectsV2 continuation token is DES-encrypted, which Node's OpenSSL 3
        # only offers through its legacy provider: without it every listing past 1,000 keys is a 500
        return {**os.environ, "NODE_OPTIONS": "--openssl-legacy-provider"}

    def signature(self) -> str:
        return f"*s3rver.js -d {self.data} *"

    def healthy(self) -> bool:
        return port_open(self.port)


def run(command: list[str], user: str | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd="/", **as_user(user))
    if done.returncode:
        raise StackError(f"{' '.join(command[-4:])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return str(done.stdout)


@dataclass
class Prometheus(Part):
    """Prometheus scraping the stack's own services, with the project's rules
    (deploy/prometheus/prometheus.yml, its targets moved to the stack's ports)."""

    storage: Path
    port: int
    targets: dict[str, int]  # scrape job -> port on 127.0.0.1
    name: ClassVar[str] = "prometheus"
    start_timeout_s: ClassVar[float] = 30.0

    @property
    def conf(self) -> Path:
        return self.storage.parent / "prometheus.yml"

    def prepare(self) -> None:
        import yaml

        self.storage.mkdir(parents=True, exist_ok=True)
        source = DEPLOY / "prometheus" / "prometheus.yml"
        config = yaml.safe_load(source.read_text())
        config["rule_files"] = [str(source.parent / rules) for rules in config.get("rule_files", [])]
        for job in config["scrape_configs"]:
            port = self.port if job["job_name"] == "prometheus" else self.targets.get(job["job_name"])
            if port is not None:
                job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        self.conf.write_text(f"# generated from {source} by eventpipe.devstack\n" + yaml.safe_dump(config))

    def command(self) -> list[str]:
        if shutil.which("prometheus") is None:
            raise StackError("prometheus not found: run `scripts/stack.sh install`")
        # no --web.enable-lifecycle: /-/quit would be open to any local user; reload with SIGHUP
        return [
            "prometheus",
            f"--config.file={self.conf}",
            f"--storage.tsdb.path={self.storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=35d",
        ]

    def signature(self) -> str:
        return f"*--storage.tsdb.path={self.storage} *"

    def healthy(self) -> bool:
        return port_open(self.port)


# The loader serves /metrics before its migrations ran (so a warehouse outage at start-up is
# visible); it is ready once the warehouse answered, i.e. its tables exist.
LOADER_MIGRATED = b"eventpipe_loader_warehouse_up 1.0"


@dataclass
class Service(Part):
    """One of eventpipe's own services (``eventpipe ingest|stream|loader``), healthy when
    its health URL answers 200 (with ``ready_marker`` in the body). An import error is a crash
    at start-up, reported loudly."""

    service: str
    eventpipe: Path  # .venv/bin/eventpipe
    health_url: str
    ready_marker: bytes = b""  # healthy only once the health URL's body holds it

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.service

    def command(self) -> list[str]:
        return [str(self.eventpipe), self.service]

    def signature(self) -> str:
        return f"*/bin/eventpipe {self.service}"

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return bool(response.status == 200 and self.ready_marker in response.read())
        except OSError:
            return False
