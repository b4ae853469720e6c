"""Optional tracking plans: a JSON Schema per track event name, as Segment Protocols does
(and Snowplow's Iglu for self-describing events). Pure: loaded once at start-up, then
``TrackingPlan.check`` per event.

The plan (``EVENTPIPE_TRACKING_PLAN``) is a folder of ``*.json`` schemas (the event name is
the schema's ``title``, else the file name without ``.json``) or one YAML file mapping event
names to schemas. A schema describes a track call's ``properties``. Events whose name the
plan does not list pass. What a violation does is a per-source setting
(``EVENTPIPE_TRACKING_PLAN_MODES=web:reject,ios:flag``): ``reject`` makes it an invalid event
(a 400 alone, a dead letter in a batch, so it is kept in S3 rejected/ with the schema error),
``flag`` accepts it with the errors in its top-level ``trackingPlanViolations`` (the
warehouse's ``events.tracking_plan_violations``). Sources not listed are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from eventpipe.errors import ConfigurationError, InvalidInput

MODES = ("reject", "flag")
MAX_ERRORS = 5


def parse_modes(raw: str) -> dict[str, str]:
    """``"web:reject,ios:flag"`` -> ``{"web": "reject", "ios": "flag"}``."""
    modes = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        source, _, mode = item.partition(":")
        if not source or mode not in MODES:
            raise ConfigurationError(f"EVENTPIPE_TRACKING_PLAN_MODES: want source:reject|flag, not {item!r}")
        modes[source] = mode
    return modes


def _schemas_in(path: Path) -> dict[str, Any]:
    if path.is_dir():
        found = {}
        for file in sorted(path.glob("*.json")):
            schema = orjson.loads(file.read_bytes())
            found[str(schema.get("title") or file.stem) if isinstance(schema, dict) else file.stem] = schema
        return found
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError("a YAML tracking plan maps event names to JSON Schemas")
    return loaded


def _validators(path: Path) -> dict[str, Draft202012Validator]:
    try:
        schemas = _schemas_in(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # orjson's decode error is a ValueError
        raise ConfigurationError(f"tracking plan {path}: {exc}") from exc
    validators = {}
    for name, schema in schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ConfigurationError(f"tracking plan {path}: schema of {name!r}: {exc.message}") from exc
        validators[str(name)] = Draft202012Validator(schema)
    return validators


def _describe(error: Any) -> str:
    where = "".join(f".{part}" for part in error.path)
    return f"properties{where}: {error.message}"[:300]


@dataclass(frozen=True)
class TrackingPlan:
    validators: dict[str, Draft202012Validator] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None, modes: str) -> TrackingPlan | None:
        """The configured plan, or None when there is none (nothing is checked)."""
        if not path:
            return None
        return cls(_validators(Path(path)), parse_modes(modes))

    def violations(self, event: dict[str, Any]) -> list[str]:
        validator = self.validators.get(event.get("event") or "") if event["type"] == "track" else None
        if validator is None:
            return []
        errors = sorted(validator.iter_errors(event.get("properties") or {}), key=lambda e: list(e.path))
        return [_describe(error) for error in errors[:MAX_ERRORS]]

    def apply(self, event: dict[str, Any]) -> None:
        """Check ``event`` for its source: raise (reject), annotate (flag) or leave it."""
        mode = self.modes.get(event["source"])
        if mode is None:
            return
        found = self.violations(event)
        if not found:
            return
        if mode == "reject":
            raise InvalidInput("tracking_plan", "; ".join(found))
        event["trackingPlanViolations"] = found
