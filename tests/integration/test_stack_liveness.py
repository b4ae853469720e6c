"""``scripts/stack.sh`` (``eventpipe.devstack`` behind it) tells a running service from a
dead one (issue 11, section 3).

After ``kill -9`` the dead process stays a zombie until its parent reaps it (here PID 1
reaps orphans a second or two late), and ``kill -0`` succeeds on a zombie: ``make up``
then saw the stream and loader as running and started nothing. Each case points a pid
file in a private ``EVENTPIPE_STACK_DIR`` at a process this test owns, so the shared
stack is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack.sh"


def stack(local: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EVENTPIPE_STACK_DIR": str(local)}
    return subprocess.run([str(STACK), *args], env=env, capture_output=True, text=True, timeout=60)


def state(pid: int) -> str:
    """The state letter of /proc/PID/stat (``Z`` for a zombie)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(") ", 1)[1].split()[0]


def spawn(*argv: str) -> int:
    """A child we deliberately do not reap (posix_spawn: nothing waits for it behind our back)."""
    return os.posix_spawn(argv[0], list(argv), dict(os.environ))


def fake_service(name: str) -> int:
    """A process whose command line is the service's (``…/bin/eventpipe stream``)."""
    return spawn(sys.executable, "-c", "import time; time.sleep(120)", "/opt/x/bin/eventpipe", name)


def write_pid(local: Path, name: str, pid: int) -> None:
    run = local / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / f"{name}.pid").write_text(f"{pid}\n")


def wait_state(pid: int, wanted: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while state(pid) != wanted:
        assert time.monotonic() < deadline, f"pid {pid} stayed {state(pid)!r}, never {wanted!r}"
        time.sleep(0.05)


@pytest.fixture
def children():
    pids: list[int] = []
    yield pids
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_a_live_service_counts_as_running(tmp_path: Path, children: list[int]) -> None:
    pid = fake_service("stream")
    children.append(pid)
    write_pid(tmp_path, "stream", pid)
    answer = stack(tmp_path, "status", "stream")
    assert answer.returncode == 0, answer
    assert answer.stdout.strip() == f"stream: running (pid {pid})"


def test_a_zombie_after_kill9_counts_as_stopped(tmp_path: Path, children: list[int]) -> None:
    pid = fake_service("loader")
    children.append(pid)
    write_pid(tmp_path, "loader", pid)
    assert stack(tmp_path, "status", "loader").returncode == 0
    os.kill(pid, signal.SIGKILL)
    wait_state(pid, "Z")  # not reaped: exactly what `kill -0` mistook for running
    os.kill(pid, 0)  # the trap itself: the zombie still passes kill -0
    answer = stack(tmp_path, "status", "loader")
    assert answer.returncode == 1, answer
    assert answer.stdout.strip() == "loader: stopped"


def test_a_reused_pid_of_another_program_counts_as_stopped(tmp_path: Path, children: list[int]) -> None:
    pid = spawn("/bin/sleep", "120")  # alive, but not the service the pid file names
    children.append(pid)
    write_pid(tmp_path, "stream", pid)
    answer = stack(tmp_path, "status", "stream")
    assert answer.returncode == 1, answer
    assert answer.stdout.strip() == "stream: stopped"


def test_down_never_signals_a_stranger_behind_a_stale_pid_file(tmp_path: Path, children: list[int]) -> None:
    pid = spawn("/bin/sleep", "120")
    children.append(pid)
    write_pid(tmp_path, "ingest", pid)
    assert stack(tmp_path, "down", "ingest").returncode == 0
    assert state(pid) in ("S", "R"), "stack.sh down killed a process that was not the collector"
    assert not (tmp_path / "run" / "ingest.pid").exists()  # the stale file is gone


def test_a_missing_or_garbage_pid_file_counts_as_stopped(tmp_path: Path) -> None:
    write_pid(tmp_path, "stream", 2**22 + 7)  # above pid_max's default: no such process
    (tmp_path / "run" / "loader.pid").write_text("not-a-pid\n")
    answer = stack(tmp_path, "status", "stream", "loader", "ingest")
    assert answer.returncode == 1, answer
    assert answer.stdout.splitlines() == ["stream: stopped", "loader: stopped", "ingest: stopped"]
