"""The nightly job on Apache Spark: ``reprocess.steps`` wired with RDD shuffles.

Same steps, same definitions as the mrjob job (``job.py``); only the shuffle differs:
``groupByKey`` between the steps, and a map-side ``reduceByKey`` for the daily rows (what
mrjob's combiner does). Keys become tuples (Spark hashes keys; mrjob's JSON made them lists).

In-process (``eventpipe reprocess --engine spark``) the session is a small local one
(``EVENTPIPE_SPARK_MASTER``, default ``local[2]``; few shuffle partitions; no UI; the driver
bound to loopback) and the rows come back to the pipeline. On a cluster the module is the
``spark-submit`` entry point: ``--day D --output URI INPUT...`` writes ``table<TAB>row`` JSON
lines under ``URI`` (docs/reprocess.md, "Spark on EMR").
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from datetime import date
from typing import Any

import orjson

from eventpipe.errors import ConfigurationError
from eventpipe.loader.reprocess import steps
from eventpipe.loader.reprocess.packed import decoded, read_packed
from eventpipe.loader.reprocess.rows import ASSIGNMENTS, TABLES, sort_rows
from eventpipe.settings import Settings

Corrections = dict[str, list[dict[str, Any]]]


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError as exc:  # an optional extra: say how to get it
        raise ConfigurationError(
            "the Spark engine needs pyspark: pip install 'eventpipe[spark]' (and Java 17+)"
        ) from exc
    return pyspark


def session_config(settings: Settings) -> dict[str, str]:
    """A small session: it shares the machine with the stack (docs/reprocess.md)."""
    partitions = str(settings.spark_shuffle_partitions)
    return {
        "spark.default.parallelism": partitions,  # RDD shuffles (groupByKey, reduceByKey)
        "spark.sql.shuffle.partitions": partitions,
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",  # never listen beyond loopback here
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.python.worker.reuse": "true",
    }


def spark_session(settings: Settings) -> Any:
    """The process's session (``getOrCreate``: the JVM starts once, ~10 s, then is reused)."""
    _pyspark()
    from pyspark.sql import SparkSession

    # executors' Python workers must import eventpipe: the interpreter running this one
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # the JVM's default bind address for everything it serves (block manager included):
    # loopback, not the first interface's address Spark would otherwise pick
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(settings.spark_master).appName("eventpipe-reprocess")
    for key, value in session_config(settings).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def _tuple_key(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    key, value = pair
    return (tuple(key) if isinstance(key, list) else key), value


def correction_pairs(sc: Any, day: date, paths: list[str], checked: bool = False) -> Any:
    """The RDD of ``(table, row)`` for ``day`` over the job's input files (``checked``: local
    inputs, checked and packed by ``inputs.Packer``)."""
    lines = sc.textFile(",".join(paths))
    packed = lines.flatMap(lambda line: steps.map_line(line, day, checked=checked))
    by_message = packed.map(read_packed).map(_tuple_key).groupByKey()
    copies = by_message.flatMap(lambda kv: steps.reduce_copies(kv[0], kv[1], day))
    by_id = copies.map(decoded).groupByKey()
    hopped = by_id.flatMap(lambda kv: steps.reduce_first_hop(kv[0], kv[1])).groupByKey()
    by_person = hopped.flatMap(lambda kv: steps.reduce_second_hop(kv[0], kv[1])).groupByKey()
    rows = by_person.flatMap(lambda kv: steps.reduce_user(kv[0], kv[1], day)).map(_tuple_key)
    daily = rows.filter(lambda kv: kv[0][0] != ASSIGNMENTS).reduceByKey(steps.sum_counts)
    assigned = rows.filter(lambda kv: kv[0][0] == ASSIGNMENTS)  # one value per key: nothing to sum
    return daily.union(assigned).flatMap(lambda kv: steps.reduce_rows(kv[0], [kv[1]]))


def run_spark(settings: Settings, day: date, paths: list[str]) -> Corrections:
    """Run the job to completion in this process; its final rows per table, sorted."""
    sc = spark_session(settings).sparkContext
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for table, row in correction_pairs(sc, day, paths, checked=True).collect():
        found[table].append(row)
    return {table: sort_rows(table, found[table]) for table in TABLES}


def main(argv: list[str] | None = None) -> int:
    """``spark-submit spark_job.py --day D --output URI INPUT...`` (a cluster's own session)."""
    parser = argparse.ArgumentParser(prog="spark_job.py", description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=date.fromisoformat, required=True)
    parser.add_argument("--output", required=True, help="a URI the job writes table<TAB>row lines under")
    parser.add_argument("inputs", nargs="+", help="raw objects (globs), assignments and identities rows")
    args = parser.parse_args(argv)
    _pyspark()
    from pyspark.sql import SparkSession

    sc = SparkSession.builder.appName("eventpipe-reprocess").getOrCreate().sparkContext
    pairs = correction_pairs(sc, args.day, args.inputs)
    pairs.map(lambda tr: orjson.dumps(tr[0]).decode() + "\t" + orjson.dumps(tr[1]).decode()).saveAsTextFile(
        args.output
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
