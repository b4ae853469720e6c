"""Optional tracking plans (pure): loading a folder of JSON Schemas or one YAML file, and what
a violation does per source: reject (an invalid event, a dead letter in a batch) or flag."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest

from eventpipe.errors import ConfigurationError, InvalidInput
from eventpipe.ingest.collect import RequestInfo, collect
from eventpipe.ingest.trackingplan import TrackingPlan

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ORDER = {
    "title": "Order Completed",
    "type": "object",
    "required": ["revenue"],
    "properties": {"revenue": {"type": "number", "minimum": 0}, "currency": {"enum": ["EUR", "USD"]}},
}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    (tmp_path / "Signed Up.json").write_text(json.dumps({"type": "object", "required": ["plan"]}))
    return tmp_path


def info(plan, source="web") -> RequestInfo:
    return RequestInfo(NOW, source, None, 32 * 1024, 100, plan=plan)


def track(name: str, properties: dict) -> dict:
    return {"type": "track", "userId": "u", "event": name, "properties": properties}


def test_a_folder_names_schemas_by_title_or_file(folder):
    plan = TrackingPlan.load(str(folder), "web:reject")
    assert plan is not None and sorted(plan.validators) == ["Order Completed", "Signed Up"]
    event = {"type": "track", "event": "Order Completed", "properties": {"revenue": -1, "currency": "GBP"}}
    assert plan.violations(event) == [
        "properties.currency: 'GBP' is not one of ['EUR', 'USD']",
        "properties.revenue: -1 is less than the minimum of 0",
    ]
    assert plan.violations({"type": "track", "event": "Unplanned", "properties": {}}) == []
    assert TrackingPlan.load(None, "") is None


def test_a_yaml_plan_and_bad_plans_are_refused_at_start(tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("Signed Up:\n  type: object\n  required: [plan]\n")
    plan = TrackingPlan.load(str(plan_file), "ios:flag")
    assert plan is not None and plan.violations(track("Signed Up", {})) == [
        "properties: 'plan' is a required property"
    ]
    plan_file.write_text("Signed Up:\n  type: nonsense\n")
    with pytest.raises(ConfigurationError, match="Signed Up"):
        TrackingPlan.load(str(plan_file), "")
    with pytest.raises(ConfigurationError, match="TRACKING_PLAN_MODES"):
        TrackingPlan.load(str(tmp_path), "web:drop")


def test_reject_mode_makes_violations_dead_letters_with_the_schema_error(folder):
    plan = TrackingPlan.load(str(folder), "web:reject")
    body = {
        "batch": [track("Order Completed", {"revenue": 5}), track("Order Completed", {"currency": "EUR"})]
    }
    collected = collect(body, None, info(plan))
    assert len(collected.records) == 1
    [rejection] = collected.rejected
    assert (rejection.reason, rejection.detail) == (
        "tracking_plan",
        "properties: 'revenue' is a required property",
    )
    with pytest.raises(InvalidInput, match="revenue"):
        collect(track("Order Completed", {}), "track", info(plan))


def test_flag_mode_accepts_and_says_why_unlisted_sources_are_not_checked(folder):
    plan = TrackingPlan.load(str(folder), "web:reject,ios:flag")
    flagged = collect(track("Order Completed", {"revenue": "ten"}), "track", info(plan, "ios"))
    event = orjson.loads(flagged.records[0][1])
    assert event["trackingPlanViolations"] == ["properties.revenue: 'ten' is not of type 'number'"]
    assert "trackingPlan" not in event["context"]  # one place: the field the loader stores
    clean = orjson.loads(
        collect(track("Order Completed", {"revenue": 1}), "track", info(plan, "ios")).records[0][1]
    )
    assert "trackingPlanViolations" not in clean
    unchecked = collect(track("Order Completed", {}), "track", info(plan, "server"))
    assert len(unchecked.records) == 1 and not unchecked.rejected
