"""The Spark engine for tests: one small local session per test module, and a runner that
feeds it job lines from files (as the pipeline does after downloading the raw objects)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from eventpipe.loader.reprocess.engines.spark_job import run_spark, spark_session
from eventpipe.settings import Settings

# small on purpose: the machine is shared; the exactness does not depend on the parallelism
SPARK = Settings(spark_master="local[2]", spark_shuffle_partitions=3)


def local_spark() -> Iterator[Settings]:
    """For a module-scoped fixture: starts the JVM once and stops it after (frees its memory)."""
    pytest.importorskip("pyspark", reason="the [spark] extra is part of [dev]: reinstall .venv")
    session = spark_session(SPARK)
    try:
        yield SPARK
    finally:
        session.stop()


def run_spark_lines(settings: Settings, day: date, lines: list[bytes], files: int = 2) -> dict:
    """The Spark engine over ``lines`` spread across ``files`` input files (several splits)."""
    with tempfile.TemporaryDirectory(prefix="ep-spark-") as tmp:
        paths = []
        for n in range(files):
            path = Path(tmp) / f"in-{n}.jsonl"
            path.write_bytes(b"".join(line + b"\n" for line in lines[n::files]))
            paths.append(str(path))
        return run_spark(settings, day, paths)
