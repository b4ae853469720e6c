"""Strict JSON decoding for untrusted bodies.

Python's ``json`` accepts NaN/Infinity, duplicate keys (last wins), 10,000-digit numbers
and deep nesting; each of those would later break a consumer or mislead one. Here every
one of them is a clear ``InvalidInput``. Lone surrogates are caught when an event is
encoded (orjson refuses them), so one bad event in a batch rejects only itself.

Two decoders, one answer. ``strict_loads`` is the reference: the stdlib decoder with a
hook per object and number, precise error messages, ~15x slower than orjson. ``loads`` first
tries orjson (the hot path, issue 16) and keeps its value only when every check below says
the reference would return the same value; anything else (an error, a lone surrogate, a
long number, a duplicate key, deep nesting) goes to ``strict_loads``, so errors and edge
cases answer exactly as before. The checks (a false alarm only costs the reference's time):
- orjson itself refuses NaN/Infinity, 1e999, invalid UTF-8 and lone surrogates;
- a run of 19+ digits, or of 41+ number characters, anywhere: orjson would turn an int
  beyond 64 bits into a float, where the reference keeps it exact or rejects it;
- duplicate keys: every ``:`` of the body against those of the parsed value re-encoded (a
  key lost to a duplicate is one ``:`` fewer; ``\\u003a``, an escaped colon, goes slow);
- depth: a walk over the parsed containers (no text scan can tell a string's brackets),
  skipped when the body has no more ``{``/``[`` than the depth allowed.
docs/benchmarks.md gives each check's cost per event.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from eventpipe.errors import InvalidInput

MAX_NUMBER_CHARS = 40
# translation tables: the characters of interest become "0", every other byte a space
_DIGITS = bytes(ord("0") if chr(b) in "0123456789" else ord(" ") for b in range(256))
_NUMBER_CHARS = bytes(ord("0") if chr(b) in "0123456789+-.eE" else ord(" ") for b in range(256))
LONG_INT_DIGITS = 19  # from here an int may not fit orjson's 64 bits


def _reject_constant(name: str) -> Any:
    raise InvalidInput("invalid_json", f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidInput("invalid_json", f"number with {len(text)} digits is too long")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidInput("invalid_json", f"number with {len(text)} characters is too long")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InvalidInput("invalid_json", "number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise InvalidInput("invalid_json", f"duplicate key {dup[:64]!r}")
    return obj


_decoder = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_reject_constant,
    parse_int=_parse_int,
    parse_float=_parse_float,
)


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when ``value`` nests objects/arrays deeper than ``max_depth`` (iterative)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Any
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


_CONTAINERS = frozenset((dict, list))


def _containers_within(value: Any, max_depth: int) -> bool:
    """True when the containers of ``value`` (a dict or list) nest at most ``max_depth`` deep.
    Level by level, one comprehension per level: no Python call per container (a 100-event
    batch has ~500 of them), and a typical event is mostly scalars, so this stays cheap."""
    level = [value]
    for _ in range(max_depth):
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) in _CONTAINERS
        ]
        if not level:
            return True
    return False


class _Unsure(Exception):
    """The fast path cannot vouch for this body: the reference decoder decides."""


def _fast_loads(body: bytes, max_depth: int) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Unsure from exc
    if b"0" * LONG_INT_DIGITS in body.translate(_DIGITS):
        raise _Unsure
    if b"0" * (MAX_NUMBER_CHARS + 1) in body.translate(_NUMBER_CHARS):
        raise _Unsure
    # a lone backslash is found by memchr, ~40x faster than five bytes: most bodies have none
    if (b"\\" in body and b"\\u003" in body) or body.count(b":") != orjson.dumps(value).count(b":"):
        raise _Unsure  # a duplicate key, most likely
    # containers nest at most as deep as the body has brackets (those in strings only add to
    # the count): a small body needs no walk (most single events); a batch has more "{" alone
    if (
        type(value) in _CONTAINERS
        and ((braces := body.count(b"{")) > max_depth or braces + body.count(b"[") > max_depth)
        and not _containers_within(value, max_depth)
    ):
        raise _Unsure
    return value


def loads(body: bytes, max_depth: int = 32) -> Any:
    """Decode ``body`` as strict UTF-8 JSON or raise ``InvalidInput`` (fast path first)."""
    try:
        return _fast_loads(body, max_depth)
    except _Unsure:
        return strict_loads(body, max_depth)


def strict_loads(body: bytes, max_depth: int = 32) -> Any:
    """The reference: decode ``body`` as strict UTF-8 JSON or raise ``InvalidInput``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("invalid_json", f"body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = _decoder.decode(text)
    except RecursionError as exc:
        raise InvalidInput("invalid_json", f"JSON nested deeper than {max_depth} levels") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput("invalid_json", f"malformed JSON: {exc.msg} at char {exc.pos}") from exc
    except ValueError as exc:  # int() over the interpreter's digit limit, bad float
        raise InvalidInput("invalid_json", "number out of range") from exc
    if depth_exceeds(value, max_depth):
        raise InvalidInput("invalid_json", f"JSON nested deeper than {max_depth} levels")
    return value
