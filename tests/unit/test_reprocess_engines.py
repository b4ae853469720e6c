"""The nightly job's engines behind one interface: how one is chosen, what Spark's local
session is configured with, and the EMR cost projection's arithmetic (issue 17)."""

from __future__ import annotations

import pytest

from bench.emr_cost import PRICE_PER_HOUR, project
from eventpipe.cli import build_parser
from eventpipe.errors import ConfigurationError
from eventpipe.loader.reprocess.engines import MrjobEngine, SparkEngine, engine_for
from eventpipe.loader.reprocess.engines.spark_job import session_config
from eventpipe.settings import Settings


def test_mrjob_is_the_default_engine_for_every_runner():
    settings = Settings()
    assert settings.reprocess_engine == "mrjob"
    assert settings.reprocess_runner == "local"  # sorts on disk: a day need not fit in memory
    for runner in ("inline", "local", "hadoop", "emr"):
        engine = engine_for(settings, settings.reprocess_engine, runner)
        assert isinstance(engine, MrjobEngine) and engine.runner == runner


def test_spark_runs_in_process_with_the_local_runners_only():
    assert isinstance(engine_for(Settings(), "spark", "local"), SparkEngine)
    assert isinstance(engine_for(Settings(), "spark", "inline"), SparkEngine)
    with pytest.raises(ConfigurationError, match="spark-submit"):
        engine_for(Settings(), "spark", "emr")
    with pytest.raises(ConfigurationError, match="unknown reprocess engine"):
        engine_for(Settings(), "flink", "local")


def test_the_cli_takes_an_engine():
    args = build_parser().parse_args(["reprocess", "--date", "2026-11-26", "--engine", "spark"])
    assert args.engine == "spark"
    assert build_parser().parse_args(["reprocess", "--date", "2026-11-26"]).engine is None  # settings
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reprocess", "--date", "2026-11-26", "--engine", "flink"])


def test_the_local_spark_session_is_small_and_stays_on_loopback():
    config = session_config(Settings(spark_shuffle_partitions=3, spark_driver_memory="512m"))
    assert config["spark.ui.enabled"] == "false"
    assert config["spark.driver.bindAddress"] == config["spark.driver.host"] == "127.0.0.1"
    assert config["spark.default.parallelism"] == config["spark.sql.shuffle.partitions"] == "3"
    assert config["spark.driver.memory"] == "512m"


def test_a_bad_driver_memory_is_refused():
    with pytest.raises(ValueError, match="spark_driver_memory"):
        Settings(spark_driver_memory="lots")


def test_the_emr_projection():
    # 36 core-µs per event: 1e9 events = 36,000 core-s = 10 core-hours; 4 nodes x 4 vCPU
    # take 0.625 h of work + 0.25 h start-up, paid on 5 instances
    found = project(36.0, core_nodes=4)
    assert found["core_hours"] == 10.0
    assert found["hours"] == 0.88  # 0.875, rounded
    assert found["instances"] == 5
    assert found["dollars"] == round(5 * 0.875 * PRICE_PER_HOUR, 2)
    assert found["dollars_with_margin"] == round(2 * 5 * 0.875 * PRICE_PER_HOUR, 2)
