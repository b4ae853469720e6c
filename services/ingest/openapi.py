"""OpenAPI descriptions of the bodies the collector reads itself (it parses raw bytes
strictly, so FastAPI's own body models would only add cost). Used by /docs and schemathesis."""

from __future__ import annotations

from typing import Any

_ID = {"type": ["string", "null"], "maxLength": 256}
_OBJ = {"type": ["object", "null"]}
_TS = {"type": ["string", "null"], "format": "date-time"}

COMMON: dict[str, Any] = {
    "userId": _ID,
    "anonymousId": _ID,
    "messageId": _ID,
    "timestamp": _TS,
    "sentAt": _TS,
    "context": _OBJ,
    "integrations": _OBJ,
}

MESSAGE_SCHEMAS: dict[str, dict[str, Any]] = {
    "track": {
        "required": ["event"],
        "properties": {**COMMON, "event": {"type": "string", "minLength": 1}, "properties": _OBJ},
    },
    "identify": {"properties": {**COMMON, "traits": _OBJ}},
    "page": {"properties": {**COMMON, "name": {"type": ["string", "null"]}, "properties": _OBJ}},
    "screen": {"properties": {**COMMON, "name": {"type": ["string", "null"]}, "properties": _OBJ}},
    "group": {
        "required": ["groupId"],
        "properties": {**COMMON, "groupId": {"type": "string"}, "traits": _OBJ},
    },
    "alias": {
        "required": ["userId", "previousId"],
        "properties": {**COMMON, "previousId": {"type": "string"}},
    },
}


def message_schema(kind: str) -> dict[str, Any]:
    return {"type": "object", **MESSAGE_SCHEMAS[kind]}


BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": list(MESSAGE_SCHEMAS)}},
            },
        },
        "sentAt": _TS,
        "context": _OBJ,
    },
}

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"success": {"type": "boolean"}, "error": {"type": "string"}, "detail": {"type": "string"}},
}


def body_spec(schema: dict[str, Any]) -> dict[str, Any]:
    content = {"schema": schema}
    return {
        "requestBody": {"required": True, "content": {"application/json": content, "text/plain": content}}
    }


RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
    for code, text in (
        (400, "malformed or invalid event(s)"),
        (401, "missing or unknown write key"),
        (413, "body, event or batch too large"),
        (429, "over the write key's rate (see Retry-After)"),
        (503, "Kafka did not acknowledge: retry (see Retry-After)"),
    )
}
