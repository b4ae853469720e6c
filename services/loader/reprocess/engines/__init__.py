"""The nightly job's engines: one interface, the same five steps (``reprocess.steps``).

- ``mrjob``: ``-r inline`` / ``-r local`` here, ``-r emr`` / ``-r hadoop`` on a cluster
  (``deploy/emr/mrjob.conf``); the default.
- ``spark``: Apache Spark (pyspark, the ``[spark]`` extra) in local mode here; on EMR or any
  cluster the same job runs under ``spark-submit`` (docs/reprocess.md, "Spark").

An engine turns the job's input files (raw events, the assignments and identities
snapshots) into the corrections of one day; everything around it (lock, inputs,
corrections objects, the day replacement) is the pipeline's and does not change with it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Protocol

from eventpipe.errors import ConfigurationError
from eventpipe.settings import Settings

ENGINES = ("mrjob", "spark")
LOCAL_RUNNERS = ("inline", "local")
Corrections = dict[str, list[dict[str, Any]]]


class Engine(Protocol):
    name: str

    def run(self, day: date, paths: list[str], tmp: Path) -> Corrections:
        """The day's final rows per table (every table of ``rows.TABLES``), sorted."""
        ...


class MrjobEngine:
    name = "mrjob"

    def __init__(self, settings: Settings, runner: str) -> None:
        self.settings, self.runner = settings, runner

    def run(self, day: date, paths: list[str], tmp: Path) -> Corrections:
        from eventpipe.loader.reprocess.runjob import job_args, run_job

        return run_job(job_args(self.settings, day, self.runner, tmp), paths)


class SparkEngine:
    name = "spark"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, day: date, paths: list[str], tmp: Path) -> Corrections:
        from eventpipe.loader.reprocess.engines.spark_job import run_spark

        return run_spark(self.settings, day, paths)


def engine_for(settings: Settings, name: str, runner: str) -> Engine:
    """The engine ``name`` for ``runner``; a clear error for a combination that cannot run."""
    if name == "mrjob":
        return MrjobEngine(settings, runner)
    if name == "spark":
        if runner not in LOCAL_RUNNERS:
            raise ConfigurationError(
                f"--engine spark runs Spark in-process (EVENTPIPE_SPARK_MASTER, local[2] here); "
                f"--runner {runner} is mrjob's. On EMR submit the Spark job with spark-submit "
                "(docs/reprocess.md, 'Spark on EMR')"
            )
        return SparkEngine(settings)
    raise ConfigurationError(f"unknown reprocess engine {name!r}: one of {', '.join(ENGINES)}")
