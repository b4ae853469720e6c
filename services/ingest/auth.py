"""Write-key authentication, as Segment does it: HTTP Basic, key as user name, empty password.

Every configured key is compared in constant time, so timing reveals neither a key nor
how much of one matched. Keys are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac


def write_key_from_header(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, _, _password = decoded.partition(":")
    return key or None


def source_for(write_key: str | None, keys: dict[str, str]) -> str | None:
    """The source a write key maps to, or None. Compares against every key, always."""
    found = None
    try:
        candidate = (write_key or "").encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800" in a body's writeKey): no key has one
        candidate = b""
    for key, source in keys.items():
        if hmac.compare_digest(candidate, key.encode()):
            found = source
    return found
