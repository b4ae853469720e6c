"""The open-loop generator compiled (bench/openloopgo, Go standard library only): the same
timetable and the same honesty as bench/openloop.py (latency from each request's due time,
failures counted, the generator's own lag reported), without a Python process's CPU taken
from the two cores the collector and the broker share (issue 16).

``build()`` compiles it into ``.local/bench-bin/`` when the source is newer than the binary
(the first build takes about a minute; Go comes from ``$PATH`` or ``/usr/local/go/bin``).
Without Go it returns the reason, and the ingest stage falls back to the Python generator
and says so in ``ingest.batch_open_loop_generator``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import orjson

from bench.common import ROOT

SOURCE = Path(__file__).with_name("openloopgo")
BINARY = ROOT / ".local" / "bench-bin" / "openloopgo"


def _go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    usual = Path("/usr/local/go/bin/go")
    return str(usual) if usual.exists() else None


def build() -> Path | str:
    """The generator's path, built if missing or stale; else why it cannot be built."""
    newest_source = max(path.stat().st_mtime for path in SOURCE.iterdir())
    if BINARY.exists() and BINARY.stat().st_mtime >= newest_source:
        return BINARY
    go = _go()
    if go is None:
        return "Go is not installed (no `go` on PATH nor /usr/local/go/bin/go)"
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    built = subprocess.run(
        [go, "build", "-C", str(SOURCE), "-o", str(BINARY), "."],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0:
        return f"`go build` failed: {built.stderr.strip()[-500:]}"
    return BINARY


def open_loop_compiled(
    binary: Path,
    url: str,
    body: bytes,
    rate: float,
    seconds: float = 10,
    connections: int = 256,
    samples: list[tuple[float, float, bool]] | None = None,
) -> dict[str, float]:
    """bench/openloop.py's ``open_loop``, run by the compiled generator: same arguments,
    same result fields, ``samples`` with due times on the same CLOCK_MONOTONIC."""
    if rate <= 0:
        raise ValueError("open-loop rate must be positive")
    with tempfile.TemporaryDirectory() as tmp:
        body_path, samples_path = Path(tmp) / "body.json", Path(tmp) / "samples.txt"
        body_path.write_bytes(body)
        args = [str(binary), "-url", url, "-body", str(body_path), "-rate", str(rate)]
        args += ["-seconds", str(seconds), "-connections", str(connections)]
        if samples is not None:
            args += ["-samples", str(samples_path)]
        ran = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 90, check=True)
        if ran.stderr:  # e.g. the first request that got no answer at all
            print(ran.stderr.strip())
        if samples is not None:
            for line in samples_path.read_text().splitlines():
                due, latency, ok = line.split()
                samples.append((float(due), float(latency), ok == "true"))
    return orjson.loads(ran.stdout)
