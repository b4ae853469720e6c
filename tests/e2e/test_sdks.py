"""The real Segment and RudderStack SDKs, unchanged, against the whole pipeline: each sends
identify/track/page calls as an application would, and the test reads the warehouse's
`events` back. What was sent (the oracle) is the calls' own arguments, never the output.

| SDK | runs in | route(s) |
|---|---|---|
| `@segment/analytics-next` (standard delivery) | headless Chromium | `/v1/i /v1/t /v1/p` |
| `@segment/analytics-next` (batching delivery) | headless Chromium | `/v1/b` |
| `@segment/analytics-node` | node | `/v1/batch` |
| `segment-analytics-python` (plain and gzip) | this process | `/v1/batch` |
| `rudder-sdk-python` | this process | `/v1/batch` |
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import sql

from eventpipe.kafka_admin import create_topics
from tests.stack import isolated_settings
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.sdks import chromium, npm_package, npm_version, run_node, static_site
from tests.support.warehouse import events_of_users, query

pytestmark = pytest.mark.e2e
WRITE_KEY = "dev-write-key"
SCRIPTS = Path(__file__).parent / "sdk"


@pytest.fixture(scope="module")
def pipe(endpoints, tmp_path_factory) -> Iterator[Pipeline]:
    """One pipeline for the module (its own topics, prefix and schema): each test has its own users."""
    settings = isolated_settings(endpoints, uuid.uuid4().hex[:10])
    create_topics(settings, wait_s=30)
    try:
        with running_pipeline(settings, tmp_path_factory.mktemp("sdk-pipeline")) as pipeline:
            yield pipeline
    finally:
        query(settings.warehouse_dsn, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE; SELECT 1").format(
            sql.Identifier(settings.warehouse_schema)))  # fmt: skip


def stored(pipe: Pipeline, users: list[str], expected: int, timeout_s: float = 90) -> list[dict[str, Any]]:
    """The warehouse rows of ``users``, once there are ``expected`` of them."""
    settings = pipe.settings
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = events_of_users(settings.warehouse_dsn, settings.warehouse_schema, users)
        if len(rows) >= expected:
            return rows
        time.sleep(1)
    raise AssertionError(f"{len(rows)} of {expected} events of {users} in the warehouse after {timeout_s}s")


def by_type(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {row["type"]: row for row in rows}
    assert len(found) == len(rows), [r["type"] for r in rows]
    return found


def calls_for(user: str) -> dict[str, Any]:
    """What every SDK sends (each in its own calling convention): the oracle of the checks."""
    return {
        "traits": {"plan": "pro", "email": f"{user}@example.com", "seats": 3},
        "event": "Order Completed",
        "properties": {"revenue": 42.5, "currency": "EUR", "items": [{"sku": "a-1", "qty": 2}]},
        "page": "Pricing",
        "page_properties": {"path": "/pricing", "ab": {"variant": "b"}},
    }


def assert_landed(rows: list[dict[str, Any]], user: str, library: str, library_version: str) -> None:
    sent = calls_for(user)
    events = by_type(rows)
    assert set(events) == {"identify", "track", "page"}
    for row in rows:
        assert row["userId"] == user and row["source"] == "dev"
        assert row["context"]["library"]["name"] == library, row["context"]
        assert library_version in str(row["context"]["library"]["version"]), row["context"]
    assert events["identify"]["traits"] == sent["traits"]
    assert events["track"]["event"] == sent["event"]
    assert events["track"]["properties"] == sent["properties"]
    assert events["page"]["name"] == sent["page"]
    page_properties = events["page"]["properties"]
    # analytics.js adds the page's own url/path/title to page properties: ours must be in there
    assert {k: page_properties.get(k) for k in sent["page_properties"]} == sent["page_properties"]


# ---------------------------------------------------------------- Python SDKs (in process)
def python_calls(client: Any, user: str) -> None:
    sent = calls_for(user)
    client.identify(user_id=user, traits=sent["traits"])
    client.track(user_id=user, event=sent["event"], properties=sent["properties"])
    client.page(user_id=user, name=sent["page"], properties=sent["page_properties"])
    client.flush()
    client.join()


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_analytics_python(pipe, gzip):
    from segment.analytics.client import Client

    errors: list[str] = []
    user = f"py-{uuid.uuid4().hex[:8]}"
    client = Client(
        WRITE_KEY, host=pipe.ingest_url, gzip=gzip, on_error=lambda exc, _: errors.append(repr(exc))
    )
    python_calls(client, user)
    assert errors == []
    library_version = version("segment-analytics-python")
    assert_landed(stored(pipe, [user], 3), user, "analytics-python", library_version)


def test_rudder_sdk_python(pipe):
    from rudderstack.analytics.client import Client

    errors: list[str] = []
    user = f"rs-{uuid.uuid4().hex[:8]}"
    client = Client(WRITE_KEY, host=pipe.ingest_url, on_error=lambda exc, _: errors.append(repr(exc)))
    python_calls(client, user)
    assert errors == []
    library_version = version("rudder-sdk-python")
    assert_landed(stored(pipe, [user], 3), user, "analytics-python", library_version)


# ---------------------------------------------------------------- Node
def test_segment_analytics_node(pipe):
    user = f"node-{uuid.uuid4().hex[:8]}"
    sent = calls_for(user)
    properties, page_properties = sent["properties"], sent["page_properties"]
    calls = [
        {"method": "identify", "args": {"userId": user, "traits": sent["traits"]}},
        {"method": "track", "args": {"userId": user, "event": sent["event"], "properties": properties}},
        {"method": "page", "args": {"userId": user, "name": sent["page"], "properties": page_properties}},
    ]
    config = {"writeKey": WRITE_KEY, "host": pipe.ingest_url, "calls": calls}
    outcome = run_node("node.cjs", json.dumps(config))
    assert outcome["errors"] == []
    assert {(r["url"].removeprefix(pipe.ingest_url), r["status"]) for r in outcome["requests"]} == {
        ("/v1/batch", 200)
    }
    node_version = npm_version("@segment/analytics-node")
    assert_landed(stored(pipe, [user], 3), user, "@segment/analytics-node", node_version)


# ---------------------------------------------------------------- the browser
@pytest.mark.parametrize("batching", [False, True], ids=["standard", "batching"])
def test_segment_analytics_next_in_chromium(pipe, tmp_path, batching):
    user = f"web-{uuid.uuid4().hex[:8]}"
    sent = calls_for(user)
    calls = [
        {"method": "identify", "args": [user, sent["traits"]]},
        {"method": "track", "args": [sent["event"], sent["properties"]]},
        {"method": "page", "args": [None, sent["page"], sent["page_properties"]]},
    ]
    host = pipe.ingest_url.removeprefix("http://") + "/v1"
    config = {"writeKey": WRITE_KEY, "apiHost": host, "batching": batching, "calls": calls}
    page = (SCRIPTS / "browser.html").read_text().replace("__CONFIG__", json.dumps(config))
    (tmp_path / "index.html").write_text(page)
    # the npm package's own browser build, where the page's `_cdn` makes the SDK look for it
    (tmp_path / "analytics-next").mkdir()
    umd = npm_package("@segment/analytics-next") / "dist" / "umd"
    (tmp_path / "analytics-next" / "bundles").symlink_to(umd)

    expected_posts = 1 if batching else 3
    with static_site(tmp_path) as site:
        page_url = f"{site}/index.html"
        outcome = run_node("browser.cjs", page_url, chromium(), pipe.ingest_url, str(expected_posts))

    result = outcome["result"]
    assert "error" not in result, result.get("error")
    assert [d["failed"] for d in result["delivered"]] == [None, None, None]
    assert outcome["outside"] == []  # nothing was fetched from beyond 127.0.0.1
    posts = sorted(
        (r["url"].removeprefix(pipe.ingest_url), r["status"])
        for r in outcome["responses"]
        if r["method"] == "POST" and r["url"].startswith(pipe.ingest_url)
    )
    assert posts == ([("/v1/b", 200)] if batching else [("/v1/i", 200), ("/v1/p", 200), ("/v1/t", 200)])

    rows = stored(pipe, [user], 3)
    assert_landed(rows, user, "analytics.js", npm_version("@segment/analytics-next"))
    assert {row["anonymousId"] for row in rows} == {result["anonymousId"]}
