"""Open-loop load: requests sent on a fixed timetable, latency measured from the timetable.

A closed loop (wrk, N connections each waiting for its answer) sends less when the server
slows down, so its percentiles leave out exactly the requests that would have waited
("coordinated omission"). Here request ``i`` is due at ``start + i / rate`` whether or not
earlier ones were answered; its latency runs from that due time to the last byte of its
answer, so a stall shows up in every request that was due during it. Waiting for a free
connection, or a generator that falls behind its timetable, counts against the server too:
the figure can only be pessimistic. ``lag_p99_ms`` says how late the generator itself sent.
"""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp

AUTH = {"Authorization": "Basic ZGV2LXdyaXRlLWtleTo=", "Content-Type": "application/json"}


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of ``values`` (0 < share <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def _run(
    url: str, body: bytes, rate: float, seconds: float, connections: int, samples: list | None
) -> dict[str, float]:
    latencies: list[float] = []
    lags: list[float] = []
    failures = 0
    total = int(rate * seconds)
    limit = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=limit, timeout=timeout, headers=AUTH) as session:

        async def send(due: float) -> None:
            nonlocal failures
            try:
                async with session.post(url, data=body) as response:
                    await response.read()
                    ok = 200 <= response.status < 300
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            latencies.append(time.perf_counter() - due)
            failures += 0 if ok else 1
            if samples is not None:
                samples.append((due, latencies[-1], ok))

        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(max(0.0, time.perf_counter() - due))
            tasks.append(asyncio.create_task(send(due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "offered_requests_per_s": rate,
        "requests": float(total),
        "answered_per_s": total / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "p999_ms": percentile(latencies, 0.999) * 1000,
        "max_ms": max(latencies) * 1000,
        "non_2xx": float(failures),
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
    }


def open_loop(
    url: str,
    body: bytes,
    rate: float,
    seconds: float = 10,
    connections: int = 256,
    samples: list[tuple[float, float, bool]] | None = None,
) -> dict[str, float]:
    """``rate`` requests/s of ``body`` to ``url`` for ``seconds``, on a fixed timetable.
    ``samples``, if given, receives every request's (due time on CLOCK_MONOTONIC, latency in
    s, 2xx or not): where in time the slow ones fell (bench/openloop_tail.py)."""
    if rate <= 0:
        raise ValueError("open-loop rate must be positive")
    return asyncio.run(_run(url, body, rate, seconds, connections, samples))
