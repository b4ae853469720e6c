"""The whole pipeline as real processes (``eventpipe ingest|stream|loader``) for e2e and
fault tests: per-test topics, S3 prefix, warehouse schema and ports, so a test never
touches the local stack's own data. Each process can be killed (-9), stopped or paused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from eventpipe.devstack.parts import LOADER_MIGRATED
from eventpipe.devstack.procs import spawn
from eventpipe.settings import Settings
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EVENTPIPE = str(ROOT / ".venv" / "bin" / "eventpipe")


def child_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """The environment of a child process that sees exactly ``settings`` (``overrides`` by
    field name on top): this process's environment without its own ``EVENTPIPE_*``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVENTPIPE_")}
    env.update(settings.environment())
    env.update({f"EVENTPIPE_{name.upper()}": str(value) for name, value in overrides.items()})
    return env


def http_ok(url: str, needle: bytes = b"") -> bool:
    """200 from ``url``, and ``needle`` in its body if given."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and needle in response.read()
    except Exception:
        return False


HEALTH = {
    "ingest": lambda s: http_ok(f"http://127.0.0.1:{s.ingest_port}/readyz"),
    "stream": lambda s: http_ok(f"http://127.0.0.1:{s.stream_web_port}/metrics"),
    "loader": lambda s: http_ok(f"http://127.0.0.1:{s.loader_port}/metrics", LOADER_MIGRATED),
}


@dataclass
class Pipeline:
    settings: Settings
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    settings_of: dict[str, Settings] = field(default_factory=dict)
    # extra EVENTPIPE_* settings of one command's processes, by field name (failpoints)
    overrides: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ingest_port}"

    def start(self, name: str, settings: Settings | None = None, wait_s: float = 60) -> subprocess.Popen:
        settings = settings or self.settings
        command = name.split("#")[0]  # "stream#2" is a second stream worker
        env = child_env(settings, **self.overrides.get(command, {}))
        proc = spawn([EVENTPIPE, command], self.logs / f"{name}.log", cwd=ROOT, env=env)
        self.procs[name] = proc
        self.settings_of[name] = settings
        deadline = time.monotonic() + wait_s
        while not HEALTH[command](settings):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not healthy within {wait_s}s: {self.tail(name)}")
            time.sleep(0.25)
        return proc

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self, name: str, timeout_s: float = 40) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        self.signal(name, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(name)

    def restart(self, name: str, wait_s: float = 60) -> subprocess.Popen:
        """Starts ``name`` again with the settings (ports) it had."""
        return self.start(name, self.settings_of.get(name), wait_s)

    def add_worker(self, name: str, wait_s: float = 60) -> subprocess.Popen:
        """Another ``stream`` or ``loader`` (``name`` like ``stream#2``) with its own port."""
        ports = {"stream_web_port": free_port(), "loader_port": free_port()}
        return self.start(name, self.settings.model_copy(update=ports), wait_s)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.signal(name, signal.SIGCONT)
            self.stop(name)

    def start_all(self, parts: tuple[str, ...] = ("ingest", "stream", "loader")) -> Pipeline:
        """Starts ``parts`` in order; on a failure every log goes to stderr first."""
        try:
            for part in parts:
                self.start(part)
        except BaseException:
            self.dump_logs()
            raise
        return self

    def dump_logs(self) -> None:
        for name in self.procs:
            sys.stderr.write(f"--- {name} log ---\n{self.tail(name)}\n")


def pipeline_settings(base: Settings, fast_flush: bool = True) -> Settings:
    """Free ports; tests flush every 2 s (benchmarks keep the production 10 s)."""
    update: dict = {"ingest_port": free_port(), "stream_web_port": free_port(), "loader_port": free_port()}
    if fast_flush:
        update["flush_interval_s"] = 2.0
    return base.model_copy(update=update)


@contextmanager
def running_pipeline(
    base: Settings,
    tmp_path: Path,
    parts: tuple[str, ...] = ("ingest", "stream", "loader"),
    fast_flush: bool = True,
) -> Iterator[Pipeline]:
    pipe = Pipeline(pipeline_settings(base, fast_flush), tmp_path)
    try:
        yield pipe.start_all(parts)
    except BaseException:
        pipe.dump_logs()
        raise
    finally:
        pipe.stop_all()
