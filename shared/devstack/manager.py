"""``make up`` / ``make down`` / ``make status``: the local stack as detached daemons.

``up`` starts what is not running and waits until each is healthy; run again, it restarts
only what has stopped (a crashed or killed service included). ``down`` stops only
processes that are the named service (never a stranger behind a stale pid file). The
servers' recipes are in parts.py, kafka.py and postgres.py; the ports and directories in layout.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from eventpipe.devstack import procs
from eventpipe.devstack.kafka import Kafka, cluster_nodes, random_cluster_id
from eventpipe.devstack.layout import COMPONENTS, Layout
from eventpipe.devstack.parts import LOADER_MIGRATED, Part, Prometheus, S3Server, Service
from eventpipe.devstack.postgres import Postgres, pg_home

STOP_ORDER = ("loader", "stream", "ingest", "prometheus", "s3", "kafka", "postgres")


def say(message: str) -> None:
    sys.stderr.write(f"\033[1m[stack]\033[0m {message}\n")
    sys.stderr.flush()


class Stack:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        for folder in (layout.run, layout.logs):
            folder.mkdir(parents=True, exist_ok=True)

    def part(self, name: str) -> Part:
        lay, s = self.layout, self.layout.settings
        local = lay.local
        if name in lay.brokers():
            return self.kafka_nodes()[lay.brokers().index(name)]
        if name == "postgres":
            return Postgres(pg_home(local), lay.postgres_port)
        if name == "s3":
            script = lay.installs / "s3rver" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
            return S3Server(local / "s3", lay.s3_port, script, bucket=s.s3_bucket)
        if name == "prometheus":
            targets = {"ingest": s.ingest_port, "stream": s.stream_web_port, "loader": s.loader_port}
            return Prometheus(local / "prometheus", lay.stack.stack_prometheus_port, targets)
        health = {
            "ingest": f"http://127.0.0.1:{s.ingest_port}/readyz",
            "stream": f"http://127.0.0.1:{s.stream_web_port}/metrics",
            "loader": f"http://127.0.0.1:{s.loader_port}/metrics",
        }
        if name in health:
            ready = LOADER_MIGRATED if name == "loader" else b""
            return Service(name, lay.venv / "bin" / "eventpipe", health[name], ready)
        raise procs.StackError(f"unknown component {name!r} (one of: {', '.join(COMPONENTS)})")

    def kafka_nodes(self) -> list[Kafka]:
        lay = self.layout
        size = lay.stack.stack_kafka_brokers
        return cluster_nodes(
            lay.local / "kafka", lay.kafka_port, lay.stack.stack_kafka_controller_port,
            lay.installs / "kafka" / "libs", size, self.cluster_id() if size > 1 else "",
            heap=lay.stack.stack_kafka_heap,
        )  # fmt: skip

    def cluster_id(self) -> str:
        """One id for every node of a cluster (what ``StorageTool random-uuid`` prints), kept."""
        path = self.layout.local / "kafka-cluster.id"
        formatted = self.layout.local / "kafka" / "data" / "meta.properties"
        if not path.exists() and formatted.exists():
            raise procs.StackError(
                f"{formatted.parent} holds a single-node Kafka: to run a cluster, `scripts/stack.sh down"
                f" kafka` and remove it first (its topics and events go with it)"
            )
        if not path.exists():
            path.write_text(random_cluster_id() + "\n")
        return path.read_text().strip()

    def expand(self, names: Iterable[str]) -> list[str]:
        """``kafka`` stands for every node of the cluster."""
        out: list[str] = []
        for name in names:
            out += self.layout.brokers() if name == "kafka" else [name]
        return list(dict.fromkeys(out))

    def pid(self, name: str, part: Part | None = None) -> int | None:
        if name == "postgres":  # PostgreSQL's own lock file names its postmaster
            pg = part or self.part(name)
            assert isinstance(pg, Postgres)
            return pg.postmaster_pid()
        return procs.read_pid(self.layout.pid_file(name))

    def running_pid(self, name: str, part: Part | None = None) -> int | None:
        """The pid of ``name`` if it runs (alive, not a zombie, its own command line)."""
        part = part or self.part(name)
        pid = self.pid(name, part)
        return pid if pid is not None and procs.is_service(pid, part.signature()) else None

    def up(self, names: Iterable[str]) -> None:
        names = self.expand(names)
        brokers = [name for name in names if name in self.layout.brokers()]
        for name in names:
            if name not in brokers:
                self.launch(name)()
            elif name == brokers[0]:  # a quorum elects no leader until enough nodes run: all first
                for wait in [self.launch(broker) for broker in brokers]:
                    wait()
                self.create_topics()

    def launch(self, name: str) -> Callable[[], None]:
        """Starts ``name`` unless it runs; returns what waits until it is healthy."""
        part = self.part(name)
        log = self.layout.log(name)
        pid = self.running_pid(name, part)
        if pid is not None:  # running: wait for it to be healthy, never start a second one
            return lambda: self.wait(name, lambda: procs.process_alive(pid), part, log)
        part.prepare()
        say(f"starting {name} ({describe(part)})")
        cwd = Path("/") if part.user else self.layout.root  # the postgres user may not enter the checkout
        proc = procs.spawn(part.command(), log, cwd=cwd, env=part.env(), user=part.user)
        self.layout.pid_file(name).write_text(f"{proc.pid}\n")
        return lambda: self.wait(name, lambda: proc.poll() is None, part, log)

    def wait(self, name: str, alive: Callable[[], bool], part: Part, log: Path) -> None:
        procs.wait_healthy(name, alive, part.healthy, part.start_timeout_s, log)
        part.after_start()

    def create_topics(self) -> None:
        from eventpipe.kafka_admin import create_topics

        created = create_topics(self.layout.settings, wait_s=60)
        if created:
            say(f"created Kafka topics: {', '.join(created)}")

    def down(self, names: Iterable[str]) -> None:
        names = self.expand(names)
        told = set()
        for name in [n for n in names if n in self.layout.brokers()]:
            part = self.part(name)  # every node told at once: a cluster that loses its quorum mid-way hangs
            pid = self.pid(name, part)
            if pid is not None and procs.is_service(pid, part.signature()):
                procs.send(pid, part.stop_signal)
                told.add(name)
        for name in names:
            part = self.part(name)
            pid = self.pid(name, part)
            stopped = pid is not None and procs.stop(pid, part.signature(), part.stop_signal, timeout_s=60)
            if stopped or name in told:
                say(f"stopped {name}")
            self.layout.pid_file(name).unlink(missing_ok=True)

    def status(self, names: Iterable[str]) -> list[tuple[str, int | None]]:
        return [(name, self.running_pid(name)) for name in self.expand(names)]


def describe(part: Part) -> str:
    if isinstance(part, Service):
        return part.health_url
    return f"127.0.0.1:{getattr(part, 'port', '?')}"


def run_command(argv: list[str]) -> int:
    """``up|down|status [component...]``; status exits 1 if any named one is not running."""
    if not argv or argv[0] not in ("up", "down", "status", "ports"):
        say("usage: python -m eventpipe.devstack up|down|status|ports [component...]")
        return 2
    command, names = argv[0], argv[1:]
    stack = Stack(Layout.load())
    every = stack.layout.components()
    unknown = [n for n in names if n not in every]
    if unknown:
        say(f"unknown component(s) {', '.join(unknown)}: one of {', '.join(every)}")
        return 2
    try:
        if command == "up":
            stack.up(names or every)
            say("up: " + " ".join(line(n, pid) for n, pid in stack.status(names or every)))
        elif command == "down":
            stack.down(names or STOP_ORDER)
        elif command == "ports":
            for what, port in stack.layout.ports().items():
                print(f"{what}: 127.0.0.1:{port}")
        else:
            found = stack.status(names or every)
            print("\n".join(line(n, pid) for n, pid in found))
            return 0 if all(pid is not None for _, pid in found) else 1
    except (procs.StackError, subprocess.SubprocessError, ValueError) as exc:
        say(f"ERROR: {exc}")
        return 1
    return 0


def line(name: str, pid: int | None) -> str:
    return f"{name}: running (pid {pid})" if pid is not None else f"{name}: stopped"
