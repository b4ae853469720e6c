"""Idle sockets against the collector's production server configuration (server_config).

The review's probe: 2,048 connections that sent a request line and one header made
``/healthz`` and good requests 503 until they were closed.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack

import httpx
import pytest

from tests.support.servers import running_ingest

AUTH = ("dev-write-key", "")
HALF_A_REQUEST = b"POST /v1/track HTTP/1.1\r\nHost: collector\r\n"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_2048_header_only_connections_do_not_starve_good_requests(topics):
    patient = topics.model_copy(update={"header_read_timeout_s": 120.0})  # they stay open meanwhile
    with running_ingest(patient) as url, ExitStack() as stack:
        idle = []
        for _ in range(2048):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port_of(url)), timeout=10))
            sock.sendall(HALF_A_REQUEST)
            idle.append(sock)
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            for n in range(5):
                good = http.post(
                    "/v1/track", json={"userId": "u", "event": "e", "messageId": f"m{n}"}, auth=AUTH
                )
                assert good.status_code == 200, good.text
        # the idle ones were neither answered nor closed: only their deadline ends them
        idle[0].setblocking(False)
        with pytest.raises(BlockingIOError):
            idle[0].recv(1)


def test_headers_not_complete_in_time_get_408_and_the_socket_closes(topics):
    impatient = topics.model_copy(update={"header_read_timeout_s": 1.0})
    with running_ingest(impatient) as url:
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=15) as half:
            half.sendall(HALF_A_REQUEST)
            answer = half.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert half.recv(4096) == b""  # closed
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=15) as silent:
            assert silent.recv(4096).startswith(b"HTTP/1.1 408")  # never sent a byte: cut as well
        # a kept-alive connection whose next request stalls in its headers is cut too
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=15) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: c\r\n\r\n")
            first = kept.recv(4096)
            assert first.startswith(b"HTTP/1.1 200"), first
            kept.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert kept.recv(4096).startswith(b"HTTP/1.1 408")
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_requests_in_flight_beyond_the_limit_get_503_not_idle_sockets(topics):
    """The limit counts requests the app works on: one body-trickling request fills a limit of 1."""
    tiny = topics.model_copy(update={"ingest_max_concurrency": 1, "header_read_timeout_s": 60.0})
    with running_ingest(tiny) as url, ExitStack() as stack:
        for _ in range(50):  # idle sockets: not requests, they do not count
            stack.enter_context(socket.create_connection(("127.0.0.1", port_of(url)), timeout=10))
        assert httpx.get(f"{url}/healthz").status_code == 200
        slow = stack.enter_context(socket.create_connection(("127.0.0.1", port_of(url)), timeout=10))
        slow.sendall(
            b"POST /v1/track HTTP/1.1\r\nHost: c\r\nAuthorization: Basic ZGV2LXdyaXRlLWtleTo=\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        busy = None
        for _ in range(50):  # the slow request is in the app once its headers are parsed
            busy = httpx.get(f"{url}/healthz")
            if busy.status_code == 503:
                break
        assert busy is not None and busy.status_code == 503, busy
        assert busy.json()["error"] == "overloaded" and busy.headers["retry-after"]
