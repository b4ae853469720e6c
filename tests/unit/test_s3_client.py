"""What ``eventpipe.s3.s3_client`` puts on the wire for a PUT, caught before it is sent (no
network): the body's CRC32 checksum header always (its integrity check), and over plain
http no SHA-256 of the body for the signature (a second pass over every object; https sends
it unsigned with the checksum anyway), docs/stream.md "What the client spends on a PUT"."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from eventpipe.s3 import s3_client
from eventpipe.settings import Settings


class _EmptyBody:
    def stream(self, **_: Any) -> list[bytes]:
        return [b""]


def _sent_headers(client: Any) -> dict[str, str]:
    sent: dict[str, str] = {}

    def answer_here(request: Any, **_: Any) -> AWSResponse:  # short-circuits the HTTP send
        sent.update(
            {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    client.meta.events.register("before-send.s3.PutObject", answer_here)
    client.put_object(Bucket="eventpipe", Key="k", Body=BODY)
    return sent


BODY = b'{"event":"x"}\n' * 1000
SIGNING = ("x-amz-content-sha256", "x-amz-checksum-crc32", "x-amz-trailer", "content-encoding")


def test_a_put_over_http_carries_the_crc32_and_no_body_hash() -> None:
    sent = _sent_headers(s3_client(Settings(s3_endpoint="http://127.0.0.1:9000")))
    crc = base64.b64encode((zlib.crc32(BODY) & 0xFFFFFFFF).to_bytes(4, "big")).decode()
    assert sent["x-amz-checksum-crc32"] == crc
    assert sent["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"


def test_a_put_over_https_is_sent_as_botocore_sends_it_by_default() -> None:
    endpoint = "https://s3.example.com"
    ours = _sent_headers(s3_client(Settings(s3_endpoint=endpoint)))
    plain = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=Config(s3={"addressing_style": "path"}),
    )
    default = _sent_headers(plain)
    assert "crc32" in default["x-amz-trailer"]  # the checksum travels in a trailer over https
    assert {h: ours.get(h) for h in SIGNING} == {h: default.get(h) for h in SIGNING}
