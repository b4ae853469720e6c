"""Reading a request body with bounded memory and time, before anything parses it.

The compressed body is capped while it streams in, and gzip is inflated with a hard cap
on the output, so a compression bomb costs at most ``limit`` bytes of memory. A body still
arriving must arrive within a deadline (a client trickling it holds a connection); one the
server already holds whole (``BODY_BUFFERED``) is read without a deadline: no read can wait.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from eventpipe.errors import InvalidInput, PayloadTooLarge

# Set in an ASGI scope by the server's protocol (server.py) once the request's last body byte
# was parsed: receive() then answers at once, so the deadline (an asyncio.timeout, ~4% of a
# single-event request's main thread, issue 16) is not armed. Absent under any other server.
BODY_BUFFERED = "eventpipe.body_buffered"


async def read_capped(receive: Receive, limit: int) -> bytes:
    """The body's ``http.request`` messages joined, or ``PayloadTooLarge`` past ``limit``
    bytes; ``ClientDisconnect`` if the client went away (as Starlette's ``Request.stream``)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("too_large", f"request body over {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def read_body(scope: Any, receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole body under ``limit``; ``InvalidInput("body_timeout")`` when it is not all in
    within ``timeout_s`` (unless the server holds it whole already)."""
    if scope.get(BODY_BUFFERED):
        return await read_capped(receive, limit)
    try:  # asyncio.timeout, not wait_for: no extra task per request
        async with asyncio.timeout(timeout_s):
            return await read_capped(receive, limit)
    except TimeoutError as exc:
        raise InvalidInput("body_timeout", f"body not received within {timeout_s}s") from exc


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise InvalidInput("unsupported_encoding", f"Content-Encoding {encoding[:32]!r} not supported")
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise InvalidInput("invalid_encoding", f"body is not valid {encoding}") from exc
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge("too_large", f"decompressed body over {limit} bytes")
    if not inflater.eof:
        raise InvalidInput("invalid_encoding", f"truncated {encoding} body")
    return body
