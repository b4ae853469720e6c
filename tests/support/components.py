"""Dedicated Kafka, S3 API server and PostgreSQL for destructive tests.

The shared local stack (Kafka 9092, s3rver 9000, PostgreSQL 5432) serves everyone's tests;
a fault test that stops or kills a component starts its own copy instead: the same
binaries (``.local/kafka/libs``, ``.local/s3rver``, the Debian PostgreSQL), free ports, a
temporary data directory. Each ``Component`` can be stopped (SIGTERM), killed (-9),
paused and restarted on the same ports and data, so a restart is a real recovery.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
KAFKA_LIBS = LOCAL / "kafka" / "libs"
S3RVER = LOCAL / "s3rver" / "node_modules" / "s3rver" / "bin" / "s3rver.js"


def port_open(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def wait_port(port: int, up: bool, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while port_open(port) != up:
        if up and proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} not {'open' if up else 'closed'} after {timeout_s}s")
        time.sleep(0.2)


class Component:
    """A server process with a fixed port and data directory, restartable in place."""

    name = "component"
    start_timeout_s = 60.0

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_user(self) -> str | None:
        """Run the server as this user (the Popen child is the server itself, so we reap it)."""
        return None

    def prepare(self) -> None:
        """One-time set-up of the data directory."""

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.dir,
                user=self.popen_user(),
            )
        finally:
            out.close()
        try:
            wait_port(self.port, True, self.start_timeout_s, self.proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}\n{self.tail()}") from exc
        self.ready()

    def ready(self) -> None:
        """Waits until the component serves requests (the port alone may open early)."""

    def running(self) -> bool:
        # poll() reaps our own child, so a killed server never lingers as a zombie that
        # would still pass ``kill -0`` (the trap scripts/stack.sh fell into, issue 11)
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9: no shutdown, no flush."""
        if self.running():
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(timeout=30)
        wait_port(self.port, False, 30)

    def stop(self, timeout_s: float = 60) -> None:
        if not self.running():
            return
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        wait_port(self.port, False, 30)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def restart(self, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()

    def tail(self, lines: int = 30) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )

    def close(self) -> None:
        self.resume()
        self.kill()


class Kafka(Component):
    """A single-node KRaft broker+controller (deploy/kafka/server.properties.in)."""

    name = "kafka"
    start_timeout_s = 120.0

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.controller_port = free_port()
        self.data = self.dir / "data"
        self.conf = self.dir / "server.properties"
        template = (ROOT / "deploy" / "kafka" / "server.properties.in").read_text()
        self.conf.write_text(
            template.replace("@PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(self.controller_port))
            .replace("@DATA@", str(self.data))
        )
        self.java = [
            "java", "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j.configuration=file:{ROOT / 'deploy' / 'kafka' / 'log4j.properties'}",
            "-cp", f"{KAFKA_LIBS}/*",
        ]  # fmt: skip
        cluster = subprocess.run(
            [*self.java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
        ).stdout.strip()
        subprocess.run(
            [*self.java, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(self.conf)],
            capture_output=True,
            check=True,
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [*self.java, "kafka.Kafka", str(self.conf)]

    def ready(self) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                admin.list_topics()
                admin.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


class S3Server(Component):
    """s3rver (files under its directory survive restarts), bucket ``eventpipe``."""

    name = "s3"

    def __init__(self, workdir: Path, bucket: str = "eventpipe") -> None:
        super().__init__(workdir)
        self.bucket = bucket
        self.data = self.dir / "data"
        self.data.mkdir(exist_ok=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            # the legacy provider: s3rver's continuation tokens use DES (scripts/stack.sh)
            "env", "NODE_OPTIONS=--openssl-legacy-provider",
            "node", str(S3RVER), "-d", str(self.data), "-a", "127.0.0.1", "-p", str(self.port),
            "--configure-bucket", self.bucket, "--silent", "--no-vhost-buckets",
        ]  # fmt: skip


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
    return found[-1]


def as_postgres(args: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class Postgres(Component):
    """A private PostgreSQL cluster with the ``eventpipe`` role and database of DESIGN.md."""

    name = "postgres"

    def __init__(self, workdir: Path) -> None:
        # the postgres user must reach the data directory: pytest's tmp dirs are root-only
        super().__init__(Path(tempfile.mkdtemp(prefix="ep-faults-pg-")))
        os.chmod(self.dir.parent, 0o755)
        self.bin = pg_bin()
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.sock.mkdir(exist_ok=True)
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            for path in (self.sock, self.log):
                shutil.chown(path, "postgres")
        subprocess.run(
            as_postgres(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                 "--auth-local=trust", "--auth-host=trust", "--no-sync"]
            ),
            capture_output=True,
            check=True,
        )  # fmt: skip
        self._created = False

    @property
    def dsn(self) -> str:
        return f"postgresql://eventpipe:eventpipe@127.0.0.1:{self.port}/eventpipe"

    def popen_user(self) -> str | None:
        # not through runuser: a killed runuser would orphan the postmaster (a zombie where
        # nothing reaps, whose pid then blocks the restart via postmaster.pid)
        return "postgres" if os.geteuid() == 0 else None

    def command(self) -> list[str]:
        return [
            str(self.bin / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.sock}",
            "-c", "max_connections=60", "-c", "fsync=on", "-c", "shared_buffers=32MB",
        ]  # fmt: skip

    def ready(self) -> None:
        psql = [str(self.bin / "psql"), "-h", str(self.sock), "-p", str(self.port), "-U", "postgres", "-qtA"]
        deadline = time.monotonic() + self.start_timeout_s
        while subprocess.run(as_postgres([*psql, "-c", "SELECT 1"]), capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready: {self.tail()}")
            time.sleep(0.3)
        if not self._created:
            for statement in (
                "CREATE ROLE eventpipe LOGIN PASSWORD 'eventpipe'",
                "CREATE DATABASE eventpipe OWNER eventpipe",
            ):
                subprocess.run(as_postgres([*psql, "-c", statement]), capture_output=True, check=True)
            self._created = True

    def stop(self, timeout_s: float = 60) -> None:
        """A fast shutdown (SIGINT): what ``pg_ctl -m fast stop`` sends."""
        if not self.running():
            return
        assert self.proc is not None
        self.signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        wait_port(self.port, False, 30)

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.dir.parent, ignore_errors=True)


@contextmanager
def dedicated(workdir: Path, *names: str) -> Iterator[dict[str, Component]]:
    """Starts the named components (``kafka``, ``s3``, ``postgres``); kills them after."""
    kinds = {"kafka": Kafka, "s3": S3Server, "postgres": Postgres}
    started: dict[str, Component] = {}
    base = workdir / f"components-{uuid.uuid4().hex[:6]}"
    base.mkdir(parents=True)
    try:
        for name in names:
            component = kinds[name](base)
            started[name] = component
            component.start()
        yield started
    finally:
        for component in started.values():
            component.close()
