"""Processes of the local stack: liveness that tells the truth, detached start, safe stop.

``kill -0`` is not liveness: it succeeds on a zombie (here orphans are reaped a second or
two late, so right after a ``kill -9`` the dead service still "answers"), and a pid file
can outlive its process while the number is reused by another program. A service runs
only if its process exists, is not a zombie, and its command line is the one we started.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from eventpipe.errors import EventpipeError


class StackError(EventpipeError):
    """The local stack cannot do what was asked: a component missing, or one that exited or
    never became healthy during start-up (its log tail in the message)."""


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (the state field of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the name field may contain spaces and parentheses: cut at the last ") "
    state = stat.rsplit(") ", 1)[-1].split(" ", 1)[0]
    return state not in ("", "Z", "X")


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").rstrip(" ")


def is_service(pid: int | None, signature: str) -> bool:
    """``pid`` is alive and its command line matches ``signature`` (a glob)."""
    return pid is not None and process_alive(pid) and fnmatch.fnmatchcase(command_line(pid), signature)


def read_pid(path: Path) -> int | None:
    """The first line of a pid file as a number; None if missing, empty or garbage."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def spawn(
    command: list[str],
    log: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Starts ``command`` detached (own session, stdin closed, output appended to ``log``):
    it outlives this process. ``user`` (when root) runs it as that user directly, never
    through su/runuser, so the pid is the server's own."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            **as_user(user),
        )


def as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as ``user`` when we are root (else as ourselves),
    without root's supplementary groups."""
    if user is None or os.geteuid() != 0:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def wait_healthy(
    name: str, alive: Callable[[], bool], healthy: Callable[[], bool], timeout_s: float, log: Path
) -> None:
    """Until ``healthy()``; a process that dies meanwhile fails at once. Only being alive
    is checked here: right after the spawn the command line can still be the parent's."""
    deadline = time.monotonic() + timeout_s
    while not healthy():
        if not alive():
            raise StackError(f"{name} exited during start-up (log: {log})\n{tail(log)}")
        if time.monotonic() > deadline:
            raise StackError(f"{name} not healthy after {timeout_s:.0f}s (log: {log})\n{tail(log)}")
        time.sleep(0.25)


def stop(pid: int, signature: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> bool:
    """Signals the service's process group (then the process) with ``sig``, waits, then
    SIGKILLs. Never signals a stranger: False if ``pid`` is not that service."""
    if not is_service(pid, signature):
        return False
    send(pid, sig)
    deadline = time.monotonic() + timeout_s
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.25)
    if process_alive(pid):
        send(pid, signal.SIGKILL)
    return True


def send(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the service leads its own session: its children go too
    except (ProcessLookupError, PermissionError):
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
