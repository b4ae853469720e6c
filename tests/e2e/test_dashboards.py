"""Every query of the Grafana dashboards (and every alert/recording rule expression) runs
against the real components: PromQL against the local Prometheus HTTP API, SQL against
PostgreSQL in a per-test schema created by the loader's own migrations.

Grafana itself does not run here: its macros and variables are substituted the way
Grafana would expand them.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

from eventpipe.devstack.layout import StackSettings
from eventpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
# the stack's own addresses (eventpipe.devstack: the settings it starts from)
PROMETHEUS = f"http://127.0.0.1:{StackSettings().stack_prometheus_port}"
INGEST = f"http://127.0.0.1:{Settings().ingest_port}"
WRITE_KEY = "dev-write-key"
SCRAPE_INTERVAL_S = 5


GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
TIME_FROM, TIME_TO = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
VARIABLES = {"${experiment:sqlstring}": "'checkout-redesign'", "${goal:sqlstring}": "'Order Completed'"}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows nest their panels
    return found


def dashboard_targets(datasource_uid: str) -> list[tuple[str, str]]:
    """(where, query) for every target of that datasource in every dashboard."""
    out = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
                if uid == datasource_uid:
                    query = target["expr"] if datasource_uid == "prometheus" else target["rawSql"]
                    out.append((f"{path.name}: {panel['title']} ({target['refId']})", query))
        for var in dashboard.get("templating", {}).get("list", []):
            if (var.get("datasource") or {}).get("uid") == datasource_uid:
                out.append((f"{path.name}: variable {var['name']}", var["query"]))
    return out


def rule_expressions() -> list[tuple[str, str]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return out


def grafana_promql(expr: str) -> str:
    for macro, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(macro, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}"
    return expr


def grafana_sql(query: str) -> str:
    query = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN '{TIME_FROM}' AND '{TIME_TO}'", query)
    query = query.replace("$__timeFrom()", f"'{TIME_FROM}'").replace("$__timeTo()", f"'{TIME_TO}'")
    for variable, value in VARIABLES.items():
        query = query.replace(variable, value)
    assert "$" not in query, f"unsubstituted Grafana macro or variable in {query!r}"
    return query


def prometheus_query(expr: str) -> dict[str, Any]:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # 400/422: parse or evaluation error, body says which
        return json.load(exc)


def prometheus_up() -> bool:
    try:
        with urllib.request.urlopen(f"{PROMETHEUS}/-/ready", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def prometheus() -> str:
    if not prometheus_up():
        pytest.fail(f"Prometheus is not running on {PROMETHEUS} (make test starts it: scripts/stack.sh up)")
    return PROMETHEUS


PROMQL = dashboard_targets("prometheus") + rule_expressions()
SQL = dashboard_targets("warehouse")


def test_dashboards_have_queries() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert {"eventpipe — pipeline health", "eventpipe — product"} <= titles
    assert len(dashboard_targets("prometheus")) >= 20
    assert len(SQL) >= 8


def defined_names() -> set[str]:
    """Metric names the code defines (string literals under services/ and shared/) and the
    recording rules' names: Prometheus answers a misspelt name with success and no series."""
    names: set[str] = set()
    for path in [*(ROOT / "services").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]:
        names |= set(re.findall(r"[\"'](eventpipe_[a-z0-9_]+)[\"']", path.read_text()))
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


SAMPLE_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info")
DEFINED = defined_names()
# names a rule reads ahead of the code, each behind an `or` that falls back to one it exports
ANTICIPATED = {
    "eventpipe_reprocess_final_event_count": "the drift ratio falls back to the input lines",
    "eventpipe_reprocess_last_failure_timestamp_seconds": "falls back to the failures counter",
}


def undefined_names(expr: str, defined: set[str]) -> list[str]:
    used = {n for n in re.findall(r"[A-Za-z_:][\w:]*", expr) if n.startswith("eventpipe")}
    return sorted(
        n for n in used if n not in defined and not any(n.removesuffix(x) in defined for x in SAMPLE_SUFFIXES)
    )


def test_the_name_check_sees_a_misspelt_metric() -> None:
    defined = defined_names()
    assert "eventpipe_loader_batches_loaded_total" in defined
    assert undefined_names("rate(eventpipe_loader_batches_loaded_total[5m])", defined) == []
    assert undefined_names("rate(eventpipe_loader_batchs_loaded_total[5m])", defined) == [
        "eventpipe_loader_batchs_loaded_total"
    ]
    assert not set(ANTICIPATED) & defined, "exported now: drop it from ANTICIPATED"


@pytest.mark.parametrize("where, expr", PROMQL, ids=[w for w, _ in PROMQL])
def test_promql_evaluates(prometheus: str, where: str, expr: str) -> None:
    answer = prometheus_query(grafana_promql(expr))
    assert answer["status"] == "success", f"{where}: {answer.get('errorType')}: {answer.get('error')}"
    # success alone would pass an empty answer: every name must be one something exports
    assert undefined_names(expr, DEFINED | set(ANTICIPATED)) == [], f"{where}: metric names nothing defines"


def test_loaded_rules_are_healthy(prometheus: str) -> None:
    with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    broken = [
        (rule["name"], rule.get("lastError"))
        for group in groups
        for rule in group["rules"]
        if rule.get("health") == "err"
    ]
    assert broken == []


def post_batch(events: list[dict[str, Any]]) -> int:
    body = json.dumps({"batch": events}).encode()
    auth = b64encode(f"{WRITE_KEY}:".encode()).decode()
    request = urllib.request.Request(
        f"{INGEST}/v1/batch",
        body,
        {"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def accepted_total() -> float:
    result = prometheus_query('sum(eventpipe_ingest_events_accepted_total{job="ingest"})')["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def only_ingest_metrics(expr: str) -> bool:
    """Built on raw ingest series only (recording rules such as the 5xx share are empty without errors)."""
    names = [n for n in re.findall(r"[A-Za-z_:][\w:]*", expr) if "eventpipe" in n]
    return bool(names) and all(n.startswith("eventpipe_ingest_") and ":" not in n for n in names)


def test_ingest_panels_have_data_after_traffic(prometheus: str, unique: str) -> None:
    """Needs traffic: posts events to the running ingest, waits for a scrape, and expects
    every dashboard panel built on ingest metrics to return series."""
    try:
        urllib.request.urlopen(f"{INGEST}/healthz", timeout=2).close()
    except OSError:
        if os.environ.get("CI"):  # make test starts the whole stack: in CI a missing ingest is a failure
            raise
        pytest.skip(f"needs the running ingest on {INGEST} (make up)")
    before = accepted_total()
    events: list[dict[str, Any]] = [
        {
            "type": "track",
            "event": "Dashboard Test",
            "userId": f"dash-{unique}-{i}",
            "messageId": f"{unique}-{i}",
        }
        for i in range(3)
    ]
    events.append({"type": "track", "event": "Dashboard Test"})  # no user: rejected, reason counted
    assert post_batch(events) == 200

    deadline = time.monotonic() + 12 * SCRAPE_INTERVAL_S
    while accepted_total() < before + 3:
        assert time.monotonic() < deadline, "the ingest's counters never reached Prometheus"
        time.sleep(1)
    time.sleep(2 * SCRAPE_INTERVAL_S)  # rate() over the panel window needs two samples

    up = prometheus_query('up{job="ingest"}')["data"]["result"]
    assert up and up[0]["value"][1] == "1"
    checked = []
    for where, expr in dashboard_targets("prometheus"):
        if not only_ingest_metrics(expr):
            continue
        answer = prometheus_query(grafana_promql(expr))
        assert answer["status"] == "success", where
        assert answer["data"]["result"], f"{where}: no data for {expr}"
        checked.append(where)
    assert len(checked) >= 5


@pytest.fixture
def warehouse(settings: Any, pg_schema: str) -> Any:
    """The per-test schema, migrated by the loader and holding a little of every table."""
    from eventpipe.loader.dialects import get_dialect
    from eventpipe.loader.migrations import migrate
    from eventpipe.reports.views import ensure_report_views

    conn = psycopg2.connect(settings.warehouse_dsn)
    migrate(conn, get_dialect("postgres"), pg_schema)
    ensure_report_views(conn, pg_schema)  # the experiment panels read them (persons)
    with conn, conn.cursor() as cur:
        cur.execute("SET search_path TO %s", (pg_schema,))
        cur.execute(
            """INSERT INTO events
                 (message_id, type, event, user_id, source, timestamp, received_at, properties)
               SELECT m, t, e, u, 'dev', ts, ts, p::jsonb FROM (VALUES
                 ('m1', 'track', 'Experiment Viewed', 'u1', timestamptz '2026-01-05 10:00Z',
                  '{"experiment_id": "checkout-redesign", "variation_id": "control"}'),
                 ('m2', 'track', 'Order Completed', 'u1', timestamptz '2026-01-05 11:00Z', NULL),
                 ('m3', 'track', 'Experiment Viewed', 'u2', timestamptz '2026-01-05 12:00Z',
                  '{"experiment_id": "checkout-redesign", "variation_id": "treatment"}'),
                 ('m4', 'page', NULL, 'u2', now(), NULL),
                 ('m5', 'track', 'Product Viewed', 'u1', timestamptz '2026-01-05 10:30Z', NULL),
                 ('m6', 'track', 'Product Added', 'u1', timestamptz '2026-01-05 10:40Z', NULL))
               AS v (m, t, e, u, ts, p)"""
        )
        cur.execute(
            """INSERT INTO engagement_daily (day, event, event_count, user_count, is_final)
               VALUES ('2026-01-05', '*', 3, 2, true), ('2026-01-05', 'Experiment Viewed', 2, 2, true),
                      ('2026-01-05', 'Order Completed', 1, 1, true), ('2026-01-06', '*', 5, 4, false)"""
        )
        cur.execute(
            """INSERT INTO experiment_assignments (experiment_id, user_key, variant, first_exposed_at)
               VALUES ('checkout-redesign', 'u1', 'control', '2026-01-05 10:00Z'),
                      ('checkout-redesign', 'u2', 'treatment', '2026-01-05 12:00Z')"""
        )
        cur.execute(
            """INSERT INTO experiment_daily (day, experiment_id, variant, event, event_count, user_count)
               VALUES ('2026-01-05', 'checkout-redesign', 'control', 'Experiment Viewed', 1, 1),
                      ('2026-01-05', 'checkout-redesign', 'treatment', 'Experiment Viewed', 1, 1),
                      ('2026-01-05', 'checkout-redesign', 'control', 'Order Completed', 1, 1)"""
        )
    yield conn
    conn.close()


def test_sql_panels_run(warehouse: Any) -> None:
    results = {}
    for where, query in SQL:
        with warehouse, warehouse.cursor() as cur:
            try:
                cur.execute(grafana_sql(query))
            except psycopg2.Error as exc:
                pytest.fail(f"{where}: {exc}")
            results[where] = cur.fetchall()
    empty = [where for where, rows in results.items() if not rows]
    assert empty == [], "queries that returned nothing from a warehouse holding every table's rows"
    dau = next(rows for where, rows in results.items() if "Daily active users" in where)
    assert [row[1] for row in dau] == [2, 4]
    conversion = next(rows for where, rows in results.items() if "Conversion to" in where)
    assert [(row[0], row[1], row[2]) for row in conversion] == [("control", 1, 1), ("treatment", 1, 0)]
    funnel = next(rows for where, rows in results.items() if "Purchase funnel" in where)
    assert [row[:3] for row in funnel] == [(1, "Product Viewed", 1), (2, "Product Added", 1)]
    retention = next(rows for where, rows in results.items() if "Daily retention" in where)
    assert [row[1] for row in retention] == [1]  # u2's page view today: one cohort of one
