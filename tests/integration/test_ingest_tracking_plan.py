"""A tracking plan in the real collector against the real Kafka: a rejecting source's
violations become dead letters carrying the schema error, a flagging source's are
accepted with the errors in ``trackingPlanViolations``, which the real loader stores in
PostgreSQL's ``events.tracking_plan_violations`` (NULL for an event that passed)."""

from __future__ import annotations

import json

import httpx

from eventpipe.bootstrap import build_loader
from eventpipe.loader.runner import Limits
from tests.support.clock import ManualClock
from tests.support.kafka import read_topic
from tests.support.loader import NOW, query, write_raw
from tests.support.servers import running_ingest

SCHEMA = {"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}


def test_reject_and_flag_per_source(topics, s3, pg_schema, tmp_path):
    (tmp_path / "Order Completed.json").write_text(json.dumps(SCHEMA))
    planned = topics.model_copy(
        update={
            "tracking_plan": str(tmp_path),
            "tracking_plan_modes": "web:reject,ios:flag",
            "write_keys": "web-key:web,ios-key:ios",
        }
    )
    good = {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 3}}
    bad = {"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"revenue": "3"}}
    with running_ingest(planned) as url:
        web = httpx.post(f"{url}/v1/batch", json={"batch": [good, bad]}, auth=("web-key", ""))
        assert web.status_code == 200 and web.json()["accepted"] == 1
        assert web.json()["rejected"][0]["reason"] == "tracking_plan"
        ios = httpx.post(f"{url}/v1/track", json=bad, auth=("ios-key", ""))
        assert ios.status_code == 200
    letters = read_topic(topics.kafka_bootstrap, topics.deadletter_topic, expect=1)
    assert [(d["value"]["reason"], d["value"]["detail"], d["value"]["message"]) for d in letters] == [
        ("tracking_plan", "properties.revenue: '3' is not of type 'number'", bad)
    ]
    events = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=2)
    error = "properties.revenue: '3' is not of type 'number'"
    flags = {e["value"]["source"]: e["value"].get("trackingPlanViolations") for e in events}
    assert flags == {"web": None, "ios": [error]}
    assert not any("trackingPlan" in e["value"]["context"] for e in events)

    write_raw(s3, topics, [e["value"] for e in events], per_object=len(events))
    loader = build_loader(
        topics, s3=s3, limits=Limits(scan_interval_s=0, deep_scan_interval_s=0), clock=ManualClock(NOW)
    )
    loader.start()
    try:
        assert loader.run_once() == 1
    finally:
        loader.close()
    stored = query(topics, "SELECT source, user_id, tracking_plan_violations FROM events ORDER BY source")
    assert stored == [("ios", "u2", [error]), ("web", "u1", None)]
