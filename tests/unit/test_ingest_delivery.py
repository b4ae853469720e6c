"""One request's deliveries, reported from a client's own thread, settle its future once:
only after the last record's acknowledgement, at the first failure, or at the deadline."""

from __future__ import annotations

import asyncio
import threading
from functools import partial

import pytest

from eventpipe.errors import PublishError
from eventpipe.ingest.publisher import DeliveryBridge


def report_from_a_thread(reports) -> None:
    """Like librdkafka's poll thread: every report off the event loop's thread."""
    worker = threading.Thread(target=lambda: [report() for report in reports])
    worker.start()
    worker.join()


async def settles_after(expected: int, reports) -> tuple[bool, BaseException | None]:
    bridge = DeliveryBridge(asyncio.get_running_loop(), expected)
    bridge.arm(5.0)
    report_from_a_thread([partial(report, bridge) for report in reports])
    await asyncio.sleep(0.05)  # the thread-safe hand-over reaches the loop
    if not bridge.future.done():
        return False, None
    return True, bridge.future.exception()


def ack(bridge: DeliveryBridge) -> None:
    bridge.delivered(None, object())


def nack(bridge: DeliveryBridge) -> None:
    bridge.delivered("Local: Message timed out", object())


def test_every_record_acknowledged_settles_it():
    assert asyncio.run(settles_after(3, [ack, ack, ack])) == (True, None)


def test_one_record_short_keeps_it_waiting():
    assert asyncio.run(settles_after(3, [ack, ack])) == (False, None)


@pytest.mark.parametrize("reports", [[nack], [ack, nack, ack], [ack, ack, ack, nack]])
def test_a_failed_record_fails_it_and_later_reports_change_nothing(reports):
    done, error = asyncio.run(settles_after(3, reports))
    if reports.index(nack) < 3:
        assert done and isinstance(error, PublishError) and "timed out" in str(error)
    else:  # all three acknowledged first: the request was answered, a stray report cannot undo it
        assert done and error is None


def test_kafka_python_callbacks_count_the_same():
    async def scenario() -> bool:
        bridge = DeliveryBridge(asyncio.get_running_loop(), 2)
        report_from_a_thread([partial(bridge.ok, "metadata")] * 2)
        await asyncio.wait_for(bridge.future, 1.0)
        return bridge.future.done()

    assert asyncio.run(scenario())


def test_the_deadline_fails_a_request_still_waiting():
    async def scenario() -> BaseException | None:
        bridge = DeliveryBridge(asyncio.get_running_loop(), 2)
        bridge.arm(0.01)
        ack(bridge)
        try:
            await bridge.future
        except PublishError as exc:
            return exc
        return None

    assert "no broker acknowledgement within 0.01s" in str(asyncio.run(scenario()))
