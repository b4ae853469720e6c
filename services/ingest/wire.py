"""The bits of HTTP the tracking path reads and writes itself, without Starlette's objects.

A single-event request built a ``Request`` (its ``Headers`` wrapper, a case-folding lookup per
header read) and a ``Response`` (whose ``__init__`` renders and inspects its headers); together
~4% of the collector's main thread (issue 16). These give the same values: header names in
an ASGI scope are lower case already (the server folds them), and the first of repeated
headers wins, as in ``Headers.get``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response


def header(scope: Any, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), as ``Request(scope).headers.get``."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class JSONBytes(Response):
    """A 200 whose JSON body is already encoded: the headers ``Response(body,
    media_type="application/json")`` would carry, in its order, set directly."""

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
