"""The broker JVM's stop-the-world GC pauses while a benchmark runs (read-only).

With ``acks=all`` every produce waits out a pause of the broker, so the collector's open-loop
tail is bounded below by them (issue 16). ``BrokerGc`` samples the JVM's collection counters
every 100 ms in a thread; ``pauses()`` turns the samples into one duration per collection.

The counters come from the JVM's own performance-data file (``/tmp/hsperfdata_<user>/<pid>``,
the memory ``jstat`` itself reads): a few ``pread``s per sample from this process. ``jstat -gc
<pid> 100`` is a second JVM that took ~0.1 of a core of the 2 here (0.97 CPU-s in 10 s,
2026-12-02), during the very seconds the open-loop p99 is measured; it remains the fallback
when the file is not there (``-XX:-UsePerfData``, another machine's broker).
"""

from __future__ import annotations

import os
import pwd
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

SAMPLE_MS = 100
# G1 (as the other collectors) counts its young pauses as collector 0 and its full ones as 1
# (jstat's YGC/YGCT and FGC/FGCT); collector 2, G1's concurrent cycle, does not stop the broker
STOP_THE_WORLD = ("sun.gc.collector.0", "sun.gc.collector.1")
HRT_FREQUENCY = "sun.os.hrt.frequency"  # the collectors' time is in these ticks per second


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


def perf_data_path(pid: int) -> Path:
    """Where a JVM keeps its performance data: HotSpot uses /tmp on Linux, whatever TMPDIR says."""
    user = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    return Path("/tmp") / f"hsperfdata_{user}" / str(pid)


def perf_offsets(data: bytes) -> tuple[str, dict[str, int]]:
    """The byte order and, per scalar 64-bit counter, where its value sits in a HotSpot
    performance-data buffer (its layout: perfMemory.hpp's PerfDataPrologue, then PerfDataEntry
    records, each naming itself and pointing at its data)."""
    if data[:4] != bytes.fromhex("cafec0c0"):
        raise ValueError("not a HotSpot performance-data file")
    order = "<" if data[4] == 1 else ">"
    entry, count = struct.unpack_from(order + "ii", data, 24)
    offsets: dict[str, int] = {}
    for _ in range(count):
        length, name_at, vector, kind, _flags, _units, _variability, data_at = struct.unpack_from(
            order + "iiibbbbi", data, entry
        )
        if length <= 0:
            break
        name = data[entry + name_at : data.index(b"\0", entry + name_at)].decode()
        if vector == 0 and kind == ord("J"):
            offsets[name] = entry + data_at
        entry += length
    return order, offsets


class PerfData:
    """A JVM's stop-the-world collections so far, read from its performance-data file."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._order, self._at = perf_offsets(os.pread(self._fd, os.fstat(self._fd).st_size, 0))
            self._frequency = self._long(HRT_FREQUENCY)
        except (ValueError, KeyError, struct.error):
            os.close(self._fd)
            raise

    def _long(self, name: str) -> int:
        return int(struct.unpack(self._order + "q", os.pread(self._fd, 8, self._at[name]))[0])

    def read(self) -> tuple[int, float]:
        """(collections so far, seconds paused so far), as jstat's YGC+FGC and YGCT+FGCT."""
        count = sum(self._long(f"{c}.invocations") for c in STOP_THE_WORLD)
        ticks = sum(self._long(f"{c}.time") for c in STOP_THE_WORLD)
        return count, ticks / self._frequency

    def close(self) -> None:
        os.close(self._fd)


class BrokerGc:
    """``with BrokerGc(pid) as gc: ...`` then ``gc.summary()``: from the JVM's performance-data
    file, else from jstat; without either or without a pid, empty. ``source`` says which."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._perf: PerfData | None = None
        self.source = "none"

    def __enter__(self) -> BrokerGc:
        if self.pid is None:
            return self
        try:
            self._perf = PerfData(perf_data_path(self.pid))
            self.source = "hsperfdata"
            self._thread = threading.Thread(target=self._read_perf_data, daemon=True)
        except (OSError, KeyError, ValueError, struct.error):
            if not shutil.which("jstat"):
                return self
            self.source = "jstat"
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._perf is not None:
            self._perf.close()

    def _read_perf_data(self) -> None:
        assert self._perf is not None
        while True:
            self.samples.append((time.monotonic(), *self._perf.read()))
            if self._stop.wait(SAMPLE_MS / 1000):
                return

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

    def summary(self, requests: Sequence[tuple[float, float, bool]] = ()) -> dict[str, float | str]:
        """Pauses, and with the open loop's ``requests``: how many slow ones a pause explains."""
        found = pauses(self.samples)
        slow, during = slow_in_pauses(requests, found)
        return {
            "broker_gc_pauses": float(len(found)),
            "broker_gc_max_ms": max((ms for _, ms in found), default=0.0),
            "broker_gc_total_ms": sum((ms for _, ms in found), 0.0),
            "requests_over_50ms": float(slow),
            "requests_over_50ms_during_broker_gc": float(during),
            "broker_gc_source": self.source,
        }
