"""A real worker process whose consumer loop fails on an error it does not handle exits
non-zero (so its supervisor starts it again and it replays from the committed offsets),
instead of staying up with a dead loop that reads nothing and still answers /healthz."""

from __future__ import annotations

import pytest

from tests.support.stream import Worker, cleanup, produce_events, synthetic_events
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(topics, s3):
    yield topics
    cleanup(s3, topics)


def test_a_worker_whose_loop_fails_exits_non_zero(stream, tmp_path):
    produce_events(stream, synthetic_events(users=5, seed=31))
    worker = Worker(stream, tmp_path, name="failing", module="tests.support.failing_stream_worker")
    try:
        wait_until(lambda: worker.proc.poll() is not None, 60, "the worker to exit")
        log = worker.log_path.read_text()
        assert worker.proc.returncode != 0, log[-3000:]
        assert "the consumer loop failed" in log and "InjectedBug" in log
    finally:
        worker.stop()
