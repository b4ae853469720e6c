"""Pure parts of the reprocess: the schedule's due days, drift, windows, the CLI's parsing."""

from __future__ import annotations

import shlex
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventpipe.cli import build_parser
from eventpipe.loader.reprocess.drift import drift
from eventpipe.loader.reprocess.rows import add_counts, window
from eventpipe.loader.reprocess.runjob import DEFAULT_CONF, job_args
from eventpipe.loader.reprocess.schedule import candidate_days, newest_due_day
from eventpipe.settings import Settings

D = date(2026, 11, 26)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (datetime(2026, 11, 28, 1, 59, tzinfo=UTC), date(2026, 11, 25)),  # before the hour: D not yet
        (datetime(2026, 11, 28, 2, 0, tzinfo=UTC), D),  # D+L ended, it is reprocess_hour_utc
        (datetime(2026, 11, 28, 23, 0, tzinfo=UTC), D),
    ],
)
def test_day_d_is_due_at_the_configured_hour_after_d_plus_lateness(now, due):
    assert newest_due_day(now, lateness_days=1, hour_utc=2) == due


@given(st.datetimes(timezones=st.just(UTC)), st.integers(0, 5), st.integers(0, 23), st.integers(1, 7))
def test_a_due_day_has_always_closed(now, lateness, hour, lookback):
    days = candidate_days(now, lateness, hour, lookback)
    assert len(days) == lookback and days == sorted(days)
    last_received = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC)
    assert (now - last_received).total_seconds() >= (lateness + 1) * 86400 + hour * 3600


def test_window_reads_the_day_before_to_lateness_after():
    assert window(D, 2) == [date(2026, 11, 25), D, date(2026, 11, 27), date(2026, 11, 28)]


def test_drift_counts_changed_rows_and_absolute_differences():
    streamed = {("a",): (5, 2), ("b",): (1, 1), ("gone",): (2, 1)}
    final = {("a",): (5, 2), ("b",): (3, 1), ("new",): (4, 2)}
    assert drift(streamed, final) == {"rows_changed": 3, "abs_event_count": 8, "abs_user_count": 3}
    assert drift(final, final) == {"rows_changed": 0, "abs_event_count": 0, "abs_user_count": 0}


def test_late_deltas_add_to_final_rows():
    assert add_counts({("a",): (5, 2)}, {("a",): (1, 0), ("b",): (2, 1)}) == {("a",): (6, 2), ("b",): (2, 1)}


def test_runner_arguments():
    settings = Settings(emr_instance_type="m6g.xlarge", emr_core_instances=4)
    assert "--no-conf" in job_args(settings, D, "inline")
    local = job_args(Settings(reprocess_sort_buffer_mb=64, reprocess_tasks=3), D, "local")
    assert local[local.index("--num-cores") + 1] == "3"
    # mrjob splits the command with shlex: the quoted tab must survive as one argument
    assert shlex.split(local[local.index("--sort-bin") + 1]) == [
        "sort",
        "-t",
        "\t",
        "-k",
        "1,1",
        "-s",
        "-S",
        "64M",
    ]
    emr = job_args(settings, D, "emr")
    assert emr[emr.index("-c") + 1] == str(DEFAULT_CONF) and DEFAULT_CONF.exists()
    assert emr[emr.index("--instance-type") + 1] == "m6g.xlarge"
    assert emr[emr.index("--num-core-instances") + 1] == "4"


def test_cli_parses_the_reprocess_command():
    args = build_parser().parse_args(
        ["reprocess", "--date", "2026-11-26", "--lateness-days", "2", "--runner", "local"]
    )
    assert (args.date, args.lateness_days, args.runner) == (D, 2, "local")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reprocess", "--date", "26/11/2026"])
