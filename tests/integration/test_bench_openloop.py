"""The open-loop generators are honest (issue 16): a request's latency runs from the time it
was due, not sent, so a server stall shows in every request due during it (no coordinated
omission), and a non-2xx answer is counted. Both generators, the compiled one (make bench's
figure) and the Python cross-check, against the same stalling server on loopback.

The bounds are lower bounds set by the server's own sleep: a slow machine only adds to them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from bench.openloop import open_loop
from bench.openloop_compiled import build, open_loop_compiled
from tests.support.servers import http_server

STALL_S = 0.5  # the first request's answer waits this long
RATE = 50.0  # requests/s: one due every 20 ms
FAILING = 5  # the sixth request to arrive gets a 503


class Stalling(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the collector
    arrived = 0
    lock = threading.Lock()
    first_answered = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with Stalling.lock:
            n, Stalling.arrived = Stalling.arrived, Stalling.arrived + 1
        if n == 0:
            Stalling.first_answered.wait(STALL_S)  # the stall: nothing set()s it
        status = 503 if n == FAILING else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:  # quiet test output
        pass


@pytest.fixture
def stalling_url() -> Iterator[str]:
    Stalling.arrived = 0
    with http_server(Stalling) as url:
        yield f"{url}/v1/batch"


def compiled(*args, **kwargs) -> dict[str, float]:
    binary = build()  # here, not at collection: a first build takes about a minute
    if not isinstance(binary, Path):
        pytest.skip(f"no compiled generator: {binary}")
    return open_loop_compiled(binary, *args, **kwargs)


@pytest.mark.parametrize("load", [compiled, open_loop], ids=["compiled", "python"])
def test_requests_due_during_a_stall_count_it_from_their_due_time(load, stalling_url):
    samples: list[tuple[float, float, bool]] = []
    # one connection: every request waits behind the stalled first one, as behind a stalled server
    result = load(stalling_url, b'{"batch": []}', RATE, seconds=1.0, connections=1, samples=samples)
    assert result["requests"] == RATE * 1.0 == len(samples)
    samples.sort()
    first_due = samples[0][0]
    for i, (due, latency, _) in enumerate(samples):
        since_first = due - first_due
        assert since_first == pytest.approx(i / RATE, abs=1e-3)  # the timetable, not the send times
        if since_first < STALL_S:  # due before the stall ended: waited out the rest of it
            assert latency >= STALL_S - since_first - 1e-3, (i, latency)
    assert result["max_ms"] >= STALL_S * 1000
    assert result["p99_ms"] >= (STALL_S - 1 / RATE) * 1000 - 1
    assert result["non_2xx"] == 1 == sum(not ok for _, _, ok in samples)
