"""The client retry storm of fault scenario 13: racing copies of every batch."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx

from tests.support.faults.load import OK, UNKNOWN, Outcomes, event_stream, send_batch


def retry_storm(
    pipe: Any, *, count: int, copies: int, kill_collector_after: int, batch_size: int = 20
) -> Outcomes:
    """``copies`` clients send every batch (same messageIds), each retrying its unknowns up
    to 5 times, racing one another; the collector is killed -9 once mid-storm and restarted."""
    events = event_stream(uuid.uuid4().hex[:8])
    batches = [[next(events) for _ in range(batch_size)] for _ in range(count // batch_size)]
    outcomes = Outcomes()
    errors: list[BaseException] = []
    url = pipe.ingest_url

    def client(offset: int) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(15.0, connect=3.0)) as http:
                for i in range(len(batches)):
                    batch = batches[(i + offset) % len(batches)]
                    for attempt in range(6):
                        if send_batch(http, url, "dev-write-key", batch, outcomes) != UNKNOWN:
                            break
                        time.sleep(min(2.0, 0.25 * 2**attempt))
        except BaseException as exc:  # re-raised below: a dead client must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k * 7,), daemon=True) for k in range(copies)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while outcomes.counts()[OK] < kill_collector_after and time.monotonic() < deadline:
        time.sleep(0.05)
    pipe.kill("ingest")
    time.sleep(1)
    pipe.restart("ingest")
    for t in threads:
        t.join(timeout=180)
    if errors:
        raise AssertionError(f"a storm client raised: {errors[0]!r}") from errors[0]
    assert not any(t.is_alive() for t in threads), "storm clients still sending after 180 s"
    planned = {m["messageId"] for batch in batches for m in batch}
    assert planned <= set(outcomes.by_id), "the storm did not send every batch"
    return outcomes
