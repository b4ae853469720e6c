"""The stream's S3 adapter (``eventpipe.stream.storage.S3Writer``, obstore underneath): what
it puts on the wire, how it reports a taken key and a failing store, and that the objects it
writes are what the boto3 readers (loader, nightly) expect. A stub S3 endpoint on loopback
answers what s3rver cannot (412/409 to a conditional PUT, 5xx); the rest runs on s3rver."""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from eventpipe.errors import StorageError
from eventpipe.settings import Settings
from eventpipe.stream.batch import S3Object
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.storage import ObjectExists, S3Writer

BODY = b'{"event":"x"}\n' * 5000
OBJ = S3Object("raw/k.jsonl.gz", "events", BODY, 5000, {"last-offset": "41", "count": "5000"})


def crc64nvme(data: bytes) -> int:
    """CRC-64/NVME (reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all ones),
    written from its definition, not by the library under test."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x9A6C9329AC4BC9B5 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def test_the_checksum_oracle_matches_the_catalogued_check_value() -> None:
    assert crc64nvme(b"123456789") == 0xAE8B14860A799888


class StubS3:
    """Records every request; answers each with ``status`` (200 unless told)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.requests.append((self.command, headers, body))
                payload = b"" if stub.status == 200 else b"<Error><Code>Stub</Code></Error>"
                self.send_response(stub.status)
                self.send_header("ETag", '"stub"')
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_PUT = do_HEAD = do_GET = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def puts(self) -> list[tuple[str, dict[str, str], bytes]]:
        return [r for r in self.requests if r[0] == "PUT"]


@pytest.fixture
def stub() -> Iterator[StubS3]:
    server = StubS3()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def writer_for(stub: StubS3, **kwargs: Any) -> S3Writer:
    settings = Settings(s3_endpoint=stub.endpoint, s3_prefix="p/")
    return S3Writer(settings, StreamMetrics(), attempts=2, **kwargs)


def test_a_put_carries_its_metadata_and_a_checksum_of_its_body(stub: StubS3) -> None:
    asyncio.run(writer_for(stub).put(OBJ))
    [(_, headers, body)] = stub.puts()
    assert body == BODY
    expected = base64.b64encode(crc64nvme(BODY).to_bytes(8, "big")).decode()
    assert headers["x-amz-checksum-crc64nvme"] == expected  # what S3 verifies the body against
    assert "x-amz-checksum-crc64nvme" in headers["authorization"]  # signed with the request
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"  # no second pass for the signature
    assert headers["x-amz-meta-last-offset"] == "41" and headers["x-amz-meta-count"] == "5000"
    assert headers["content-type"] == "application/x-ndjson"
    assert "if-none-match" not in headers


@pytest.mark.parametrize("status", [412, 409])
def test_a_taken_key_of_an_exclusive_put_is_reported_at_once(stub: StubS3, status: int) -> None:
    writer = writer_for(stub, conditional=True)
    asyncio.run(writer.put(OBJ, exclusive=True))
    assert stub.puts()[-1][1]["if-none-match"] == "*"
    stub.status = status
    with pytest.raises(ObjectExists):
        asyncio.run(writer.put(OBJ, exclusive=True))
    assert len(stub.puts()) == 2  # not retried: the key is someone else's


def test_without_conditional_puts_an_exclusive_put_sends_no_condition(stub: StubS3) -> None:
    asyncio.run(writer_for(stub).put(OBJ, exclusive=True))  # s3rver ignores the header
    assert "if-none-match" not in stub.puts()[-1][1]


def test_a_failing_store_is_retried_then_reported_and_recovers(stub: StubS3) -> None:
    writer = writer_for(stub)
    stub.status = 503
    with pytest.raises(StorageError) as raised:
        asyncio.run(writer.put(OBJ))
    assert not isinstance(raised.value, ObjectExists)
    assert len(stub.puts()) >= 2  # each of the 2 attempts sent it
    assert writer.metrics.s3_up._value.get() == 0
    stub.status = 200
    asyncio.run(writer.put(OBJ))
    assert writer.metrics.s3_up._value.get() == 1


def test_a_missing_object_has_no_recorded_offset(stub: StubS3) -> None:
    stub.status = 404
    assert asyncio.run(writer_for(stub).recorded_last_offset("raw/none.jsonl.gz")) is None
    assert len(stub.requests) == 1  # a missing key is an answer, not a failure


def test_objects_written_here_read_back_through_boto3_as_written(settings: Settings, s3: Any) -> None:
    """The loader and the nightly read the stream's objects with boto3: same key, body,
    metadata and content type."""
    writer = S3Writer(settings, StreamMetrics(), attempts=2)
    asyncio.run(writer.put(OBJ))
    got = s3.get_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + OBJ.key)
    assert got["Body"].read() == BODY
    assert got["Metadata"] == {"last-offset": "41", "count": "5000"}
    assert got["ContentType"] == "application/x-ndjson"
    assert asyncio.run(writer.recorded_last_offset(OBJ.key)) == 41
    s3.delete_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + OBJ.key)
