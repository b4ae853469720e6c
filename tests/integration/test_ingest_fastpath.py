"""Tracking POSTs skip the framework's layers (services/ingest/fastpath.py): what those layers
did for them must still happen, judged against the full stack serving other requests."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from tests.support.kafka import read_topic
from tests.support.servers import running_ingest

AUTH = ("dev-write-key", "")
ORIGIN = {"Origin": "https://shop.example"}
EVENT = {"userId": "u", "event": "e"}


def cors_part(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-") or k == "vary"}


@pytest.mark.parametrize("headers", [ORIGIN, {}], ids=["cross-origin", "same-origin"])
def test_tracking_answers_carry_the_cors_headers_the_full_stack_adds(topics, headers):
    with running_ingest(topics) as url:
        full_stack = httpx.get(f"{url}/healthz", headers=headers)  # through CORSMiddleware
        accepted = httpx.post(f"{url}/v1/track", json=EVENT, auth=AUTH, headers=headers)
        refused = httpx.post(f"{url}/v1/t", json=EVENT, headers=headers)  # no key
    assert (accepted.status_code, refused.status_code) == (200, 401)
    assert cors_part(full_stack)  # Vary at least: the comparison is not between two empty sets
    assert cors_part(accepted) == cors_part(full_stack) == cors_part(refused)


def test_tracking_answers_are_counted_by_path_and_status_and_other_methods_take_the_router(topics):
    with running_ingest(topics) as url:
        assert httpx.post(f"{url}/v1/identify", json=EVENT, auth=AUTH).status_code == 200
        assert httpx.post(f"{url}/v1/identify", content=b"{", auth=AUTH).status_code == 400
        assert httpx.post(f"{url}/v1/identify", json=EVENT, auth=("nope", "")).status_code == 401
        assert httpx.get(f"{url}/v1/identify").status_code == 405  # not a POST: FastAPI's router
        metrics = httpx.get(f"{url}/metrics").text
    for status in ("200", "400", "401", "405"):
        assert f'eventpipe_ingest_requests_total{{route="/v1/identify",status="{status}"}} 1.0' in metrics


def test_a_body_whole_in_one_packet_and_one_in_pieces_are_both_read_and_stored(topics):
    """The server marks a body it holds whole and the app reads it without a deadline; one still
    arriving is read under the slow-body deadline (body.py): both are the same request."""

    def post(sock: socket.socket, message_id: str, pause_s: float) -> bytes:
        body = orjson.dumps({**EVENT, "messageId": message_id})
        head = (
            b"POST /v1/track HTTP/1.1\r\nHost: c\r\nAuthorization: Basic ZGV2LXdyaXRlLWtleTo=\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        if pause_s:
            sock.sendall(head + body[:5])
            time.sleep(pause_s)  # the rest comes later: the app waits for it
            sock.sendall(body[5:])
        else:
            sock.sendall(head + body)
        return sock.recv(4096)

    with (
        running_ingest(topics) as url,
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock,
    ):
        sock.settimeout(15)
        whole, pieces = post(sock, "whole", 0), post(sock, "pieces", 0.3)
    assert whole.startswith(b"HTTP/1.1 200") and b'"accepted":1' in whole, whole
    assert pieces.startswith(b"HTTP/1.1 200") and b'"accepted":1' in pieces, pieces
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=2)
    assert sorted(r["value"]["messageId"] for r in records) == ["pieces", "whole"]
