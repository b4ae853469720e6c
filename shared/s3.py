"""The S3 adapter shared by the services: a configured boto3 client, the stream worker's obstore
client, and gzip JSONL helpers."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import repeat
from typing import Any

import boto3
import orjson
from botocore.config import Config
from isal import igzip
from obstore.store import S3Store

from eventpipe.settings import Settings, reveal


def s3_client(settings: Settings) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=reveal(settings.s3_secret_key),
        config=Config(
            # Body integrity comes from the CRC32 checksum botocore (>= 1.36) adds to every
            # PUT. Over https (AWS) botocore sends the body unsigned with it anyway (in a
            # trailer); over plain http (the local s3rver) it would also hash every body with
            # SHA-256 for the signature: a second pass over each object (a 3 MB raw cut: ~2.5
            # ms of client CPU, docs/stream.md "What the client spends on a PUT").
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def object_store(settings: Settings) -> S3Store:
    """The stream worker's S3 client for its HEADs, PUTs and GETs: obstore (Rust
    ``object_store``, async on its own threads, the GIL released), ~1 ms of client CPU per
    call less than boto3's in a thread (docs/stream.md "What the client spends on a PUT").
    The same requests as ``s3_client``'s: path-style, static keys, the body sent unsigned
    with a checksum header S3 verifies (CRC64NVME here, boto3's CRC32), timeouts 5 s / 30 s,
    two retries inside each call (the caller's retries wrap them, as boto3's standard mode)."""
    endpoint = settings.s3_endpoint or None
    return S3Store(
        settings.s3_bucket,
        endpoint=endpoint,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key,
        secret_access_key=reveal(settings.s3_secret_key),
        virtual_hosted_style_request=False,
        unsigned_payload=True,  # no SHA-256 pass over each body for the signature...
        checksum_algorithm="CRC64NVME",  # ...its integrity is this header, checked by S3
        client_options={
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
            "connect_timeout": timedelta(seconds=5),
            "timeout": timedelta(seconds=30),
        },
        retry_config={"max_retries": 2, "retry_timeout": timedelta(seconds=30)},
    )


# gzip levels 0-3 are ISA-L's (python-isal's igzip): the same gzip format every reader
# decodes (stdlib gzip, Redshift COPY GZIP, s3 tooling), at level 1 ~4x less CPU than zlib's
# level 1 with a smaller output (docs/stream.md, "Where the worker's CPU goes"); levels 4-9
# are zlib's, for the callers that want its best ratio.
ISAL_LEVELS = range(0, 4)


def gzip_lines(lines: Iterable[bytes], level: int = 9) -> bytes:
    """Deterministic gzip (mtime 0) of one line per item: the same lines at the same level
    always give the same bytes. Levels 0-3 compress with ISA-L, 4-9 with zlib."""
    return gzip_body(jsonl(lines), level)


def gzip_body(body: bytes, level: int = 9) -> bytes:
    """Deterministic gzip (mtime 0) of a body that is already JSONL (``gzip_lines`` of its
    lines gives the same bytes). Levels 0-3 compress with ISA-L, 4-9 with zlib."""
    if level in ISAL_LEVELS:
        return igzip.compress(body, level, mtime=0)
    return gzip.compress(body, level, mtime=0)


def jsonl(lines: Iterable[bytes]) -> bytes:
    """The lines, each ending in exactly one newline (a line's own trailing newlines dropped).
    One join, no copy of the body after it: a cut's body is megabytes, and a second pass over
    it (a concatenation, a scan for a blank line) cost more than zlib's old per-line strip."""
    items = lines if isinstance(lines, list) else list(lines)
    if any(map(bytes.endswith, items, repeat(b"\n"))):
        items = [line.rstrip(b"\n") for line in items]
    return b"\n".join([*items, b""]) if items else b""


def gzip_json_rows(rows: Iterable[dict[str, Any]], level: int = 9) -> bytes:
    """``gzip_lines`` of one ``orjson.dumps`` per row (whose output never ends in a newline)."""
    return gzip_lines(list(map(orjson.dumps, rows)), level)  # map: no generator frame per row


def iter_gzip_lines(body: bytes) -> Iterator[bytes]:
    for line in gzip.decompress(body).splitlines():
        if line:
            yield line


def list_keys(client: Any, bucket: str, prefix: str, start_after: str = "") -> Iterator[dict[str, Any]]:
    """Every object under ``prefix`` (ListObjectsV2 pages), in key order."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        kwargs["StartAfter"] = start_after
    while True:
        page = client.list_objects_v2(**kwargs)
        yield from page.get("Contents", [])
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
        kwargs.pop("StartAfter", None)
