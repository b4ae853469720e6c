"""Reading a request body with bounded memory, before anything parses it.

The compressed body is capped while it streams in, and gzip is inflated with a hard cap
on the output, so a compression bomb costs at most ``limit`` bytes of memory.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from eventpipe.errors import InvalidInput, PayloadTooLarge


async def read_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("too_large", f"request body over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


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
