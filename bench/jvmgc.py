"""The broker JVM's stop-the-world GC pauses while a benchmark runs (``jstat``, read-only).

With ``acks=all`` every produce waits out a pause of the broker, so the collector's open-loop
tail is bounded below by them (issue 16). ``BrokerGc`` samples ``jstat -gc <pid> 100`` in a
thread; ``pauses()`` turns the samples into one duration per collection.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

SAMPLE_MS = 100


def pid_listening(port: int) -> int | None:
    """The process that listens on TCP ``port`` (loopback or any address), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(str(fd.readlink()) in inodes for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def pauses(samples: list[tuple[float, int, float]]) -> list[tuple[float, float]]:
    """(t, ms) per stop-the-world collection from (t, collections so far, seconds paused so
    far) samples. jstat may show a collection's count one sample before its time, so a
    collection's pause is the paused time added from the sample before it until the count
    next changes."""
    out: list[tuple[float, float]] = []
    i = 1
    while i < len(samples):
        _, count0, paused0 = samples[i - 1]
        t, count, _ = samples[i]
        if count > count0:
            j = i
            while j + 1 < len(samples) and samples[j + 1][1] == count:
                j += 1
            per = (samples[j][2] - paused0) * 1000 / (count - count0)
            out.extend((t, per) for _ in range(count - count0))
            i = j + 1
            continue
        i += 1
    return out


def slow_in_pauses(
    requests: Sequence[tuple[float, float, bool]], found: list[tuple[float, float]], slow_s: float = 0.05
) -> tuple[int, int]:
    """(requests slower than ``slow_s``, how many of them were in flight during a broker pause).
    ``requests``: (due, latency, ok) from bench/openloop.py; ``found``: (t, ms) from ``pauses``,
    where t is the first sample showing the collection, so the pause lies within the
    ``SAMPLE_MS`` before t, less its own length."""
    windows = [(t - (SAMPLE_MS + ms) / 1000, t) for t, ms in found]
    slow = [(due, due + latency) for due, latency, _ in requests if latency > slow_s]
    during = sum(any(due <= end and done >= start for start, end in windows) for due, done in slow)
    return len(slow), during


class BrokerGc:
    """``with BrokerGc(pid) as gc: ...`` then ``gc.summary()``; without jstat or a pid, empty."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> BrokerGc:
        if self.pid is not None and shutil.which("jstat"):
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _sample(self) -> None:
        jstat = subprocess.Popen(
            ["jstat", "-gc", str(self.pid), str(SAMPLE_MS)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert jstat.stdout is not None
            header = jstat.stdout.readline().split()
            for line in jstat.stdout:
                if self._stop.is_set():
                    break
                row = dict(zip(header, line.split(), strict=False))
                if "YGC" in row:  # G1's concurrent cycles (CGC) do not stop the broker
                    paused = float(row["YGCT"]) + float(row["FGCT"])
                    self.samples.append((time.monotonic(), int(row["YGC"]) + int(row["FGC"]), paused))
        finally:
            jstat.terminate()
            jstat.wait(timeout=5)

    def summary(self, requests: Sequence[tuple[float, float, bool]] = ()) -> dict[str, float]:
        """Pauses, and with the open loop's ``requests``: how many slow ones a pause explains."""
        found = pauses(self.samples)
        slow, during = slow_in_pauses(requests, found)
        return {
            "broker_gc_pauses": float(len(found)),
            "broker_gc_max_ms": max((ms for _, ms in found), default=0.0),
            "broker_gc_total_ms": sum((ms for _, ms in found), 0.0),
            "requests_over_50ms": float(slow),
            "requests_over_50ms_during_broker_gc": float(during),
        }
