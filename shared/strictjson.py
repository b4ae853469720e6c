"""Strict JSON decoding for untrusted bodies.

Python's ``json`` accepts NaN/Infinity, duplicate keys (last wins), 10,000-digit numbers
and deep nesting; each of those would later break a consumer or mislead one. Here every
one of them is a clear ``InvalidInput``. Lone surrogates are caught when an event is
encoded (orjson refuses them), so one bad event in a batch rejects only itself.
"""

from __future__ import annotations

import json
from typing import Any

from eventpipe.errors import InvalidInput

MAX_NUMBER_CHARS = 40


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


def loads(body: bytes, max_depth: int = 32) -> Any:
    """Decode ``body`` as strict UTF-8 JSON or raise ``InvalidInput``."""
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
