"""A tracking plan in the real collector against the real Kafka: a rejecting source's
violations become dead letters carrying the schema error, a flagging source's are
accepted with the errors in context.trackingPlan."""

from __future__ import annotations

import json

import httpx

from tests.support.kafka import read_topic
from tests.support.servers import running_ingest

SCHEMA = {"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}


def test_reject_and_flag_per_source(topics, tmp_path):
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
    flags = {e["value"]["source"]: e["value"]["context"].get("trackingPlan") for e in events}
    assert flags == {"web": None, "ios": {"violations": ["properties.revenue: '3' is not of type 'number'"]}}
