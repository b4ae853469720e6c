"""Dedicated Kafka, S3 API server and PostgreSQL for destructive tests.

The shared local stack (Kafka 9092, s3rver 9000, PostgreSQL 5432) serves everyone's tests;
a fault test that stops or kills a component starts its own copy instead, from the same
recipes as ``make up`` (``eventpipe.devstack``: same binaries, Kafka format-and-start,
s3rver options, PostgreSQL auth), on free ports and in a temporary data directory. Here the
server is a child the test owns and reaps, so each ``Component`` can be stopped, killed
(-9), paused and restarted on the same ports and data: a restart is a real recovery.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from eventpipe.devstack.kafka import Kafka, random_cluster_id
from eventpipe.devstack.parts import Part, S3Server, port_open
from eventpipe.devstack.postgres import Postgres
from eventpipe.devstack.procs import send, spawn, tail, wait_healthy
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = ROOT / ".local" / "kafka" / "libs"
S3RVER = ROOT / ".local" / "s3rver" / "node_modules" / "s3rver" / "bin" / "s3rver.js"


def wait_port_closed(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} still open after {timeout_s}s")
        time.sleep(0.2)


class Component:
    """A server process with a fixed port and data directory, restartable in place."""

    def __init__(self, part: Any, workdir: Path) -> None:
        self.part: Any = part  # a recipe of eventpipe.devstack (its address: .bootstrap, .endpoint, .dsn)
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        part.prepare()

    @property
    def name(self) -> str:
        return self.part.name

    @property
    def port(self) -> int:
        return self.part.port

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    def start(self) -> None:
        self.launch()()

    def launch(self) -> Callable[[], None]:
        """Spawns the server; returns what waits until it is healthy (a KRaft quorum elects
        no leader until enough nodes run, so a cluster's nodes are all launched first)."""
        recipe: Part = self.part
        cwd = Path("/") if recipe.user else self.dir  # the postgres user may not enter it
        proc = self.proc = spawn(recipe.command(), self.log, cwd=cwd, env=recipe.env(), user=recipe.user)

        def wait() -> None:
            wait_healthy(
                self.name, lambda: proc.poll() is None, recipe.healthy, recipe.start_timeout_s, self.log
            )
            recipe.after_start()

        return wait

    def running(self) -> bool:
        # poll() reaps our own child, so a killed server never lingers as a zombie that
        # would still pass ``kill -0`` (eventpipe.devstack.procs)
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            send(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9: no shutdown, no flush."""
        if self.running():
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(timeout=30)
        wait_port_closed(self.port, 30)

    def stop(self, timeout_s: float = 60) -> None:
        """The recipe's clean shutdown (PostgreSQL: SIGINT, a "fast" shutdown)."""
        if not self.running():
            return
        assert self.proc is not None
        self.signal(self.part.stop_signal)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        wait_port_closed(self.port, 30)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def restart(self, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()

    def tail(self, lines: int = 30) -> str:
        return tail(self.log, lines)

    def close(self) -> None:
        self.resume()
        self.kill()


def kafka(workdir: Path) -> Component:
    home = workdir / "kafka"
    part = Kafka(
        home, free_port(), free_port(), KAFKA_LIBS, heap="512m", jvm_flags=("-XX:TieredStopAtLevel=1",)
    )
    return Component(part, home)


def kafka_cluster(workdir: Path, size: int = 3) -> list[Component]:
    """``size`` KRaft broker+controller nodes, each on its own free ports (not the stack's
    +100 steps, which another test or stack may hold) and data directory."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    voters = ",".join(f"{n}@127.0.0.1:{controller}" for n, (_, controller) in enumerate(ports, 1))
    cluster_id = random_cluster_id()
    nodes = []
    for n, (port, controller) in enumerate(ports, 1):
        home = workdir / f"kafka-{n}"
        part = Kafka(home, port, controller, KAFKA_LIBS, heap="384m", jvm_flags=("-XX:TieredStopAtLevel=1",),
                     node_id=n, voters=voters, cluster_size=size, cluster_id=cluster_id)  # fmt: skip
        nodes.append(Component(part, home))
    return nodes


def start_together(nodes: list[Component]) -> None:
    for wait in [node.launch() for node in nodes]:
        wait()


def s3_server(workdir: Path, wrapper: tuple[str, ...] = ()) -> Component:
    home = workdir / "s3"
    return Component(S3Server(home / "data", free_port(), S3RVER, wrapper=wrapper), home)


class PrivatePostgres(Component):
    """Its cluster lives outside pytest's tmp dirs, which the postgres user cannot enter."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ep-faults-pg-"))
        self.base.chmod(0o755)
        part = Postgres(
            self.base / "postgres",
            free_port(),
            max_connections=60,
            settings=("fsync=on", "shared_buffers=32MB"),
            fast_initdb=True,
        )
        super().__init__(part, self.base / "postgres")

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"  # root's: the child's output, opened before it runs

    def close(self) -> None:
        try:
            super().close()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def dedicated(workdir: Path, *names: str) -> Iterator[dict[str, Component]]:
    """Starts the named components (``kafka``, ``s3``, ``postgres``, or ``kafka-cluster``: three
    KRaft nodes named ``kafka-1`` … ``kafka-3``); kills them after."""
    base = workdir / f"components-{uuid.uuid4().hex[:6]}"
    makers = {"kafka": lambda: kafka(base), "s3": lambda: s3_server(base), "postgres": PrivatePostgres}
    started: dict[str, Component] = {}
    try:
        for name in names:
            if name == "kafka-cluster":
                nodes = kafka_cluster(base)
                started.update({f"kafka-{n}": node for n, node in enumerate(nodes, 1)})
                start_together(nodes)
                continue
            component = makers[name]()
            started[name] = component
            component.start()
        yield started
    finally:
        for component in started.values():
            with suppress(Exception):  # one failing close must not leave the others running
                component.close()
