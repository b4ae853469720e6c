"""Experiment reports against the real PostgreSQL: generated events, an independent truth.

The tables come from the loader's migrations; where those are missing, from DESIGN.md's
DDL (plus ``day_status``/``load_ledger`` of docs/contracts.md §5).
Truth: ``tests.reference`` for assignments, naive loops for the rest.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from eventpipe.bootstrap import build_s3
from eventpipe.reports import service
from eventpipe.reports import warehouse as wh
from eventpipe.reports.views import ensure_report_views
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts
from tests.reference import deduplicate, truth

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE {s}.events (
  message_id text primary key, type text not null, event text, user_id text,
  anonymous_id text, source text not null, timestamp timestamptz not null,
  received_at timestamptz not null, sent_at timestamptz, original_timestamp timestamptz,
  properties jsonb, traits jsonb, context jsonb);
CREATE TABLE {s}.experiment_assignments (
  experiment_id text, user_key text, variant text not null,
  first_exposed_at timestamptz not null, primary key (experiment_id, user_key));
CREATE TABLE {s}.day_status (day date primary key, is_final boolean not null default false,
  cutoff_day date, finalized_at timestamptz);
CREATE TABLE {s}.load_ledger (key text primary key, table_name text not null, rows bigint not null,
  loaded_at timestamptz not null default now());
"""

EXPERIMENTS = {"exp-a": ("control", "green"), "exp-b": ("control", "v1", "v2"), "7": ("control", "x")}
GOALS = ("Order Completed", "Signed Up", "page", "screen", "Experiment Viewed", "Never Happens")


def generate(seed: int, users: int, start: datetime) -> list[dict[str, Any]]:
    """Events with every case the definitions distinguish: user/anonymous keys, id and name
    properties, users who see two variants, goals before and after exposure, duplicates."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []

    def emit(kind: str, user: tuple[str | None, str], at: datetime, **fields: Any) -> None:
        received = at + timedelta(seconds=rng.uniform(0, 5))
        event = {"type": kind, "messageId": f"m{seed}-{len(events)}", "anonymousId": user[1], **fields}
        if user[0]:
            event["userId"] = user[0]
        event |= {"timestamp": format_ts(at), "receivedAt": format_ts(received)}
        events.append(event)
        if rng.random() < 0.03:  # a later duplicate: must count once
            events.append(event | {"receivedAt": format_ts(received + timedelta(minutes=5))})

    for n in range(users):
        user = (f"u{n}" if rng.random() < 0.5 else None, f"anon{n}")
        clock = start + timedelta(minutes=rng.uniform(0, 600))
        for _ in range(rng.randint(1, 8)):
            clock += timedelta(minutes=rng.uniform(0, 30))
            roll = rng.random()
            if roll < 0.35:
                exp = rng.choice(list(EXPERIMENTS))
                variant = rng.choice(EXPERIMENTS[exp])
                if rng.random() < 0.3:
                    props: dict[str, Any] = {"experiment_name": exp, "variation_name": variant}
                else:
                    props = {"experiment_id": int(exp) if exp.isdigit() else exp, "variation_id": variant}
                if rng.random() < 0.05:
                    props.pop(next(k for k in props if k.startswith("variation")))  # invalid exposure
                emit("track", user, clock, event="Experiment Viewed", properties=props)
            elif roll < 0.75:
                emit("track", user, clock, event=rng.choice(GOALS[:2]), properties={"v": 1})
            elif roll < 0.85:
                emit(rng.choice(("page", "screen")), user, clock, name="Home")
            elif roll < 0.9:
                emit("identify", user, clock, traits={"plan": "pro"})
            else:
                emit("track", user, clock, event="page", properties={})  # a track named "page"
    return events


def insert(conn: Any, schema: str, events: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """Load deduplicated events and the reference assignments, as the loader would."""
    kept = deduplicate(events)
    assignments = truth(events)["experiment_assignments"]
    with conn, conn.cursor() as cur:
        cur.executemany(
            f'INSERT INTO "{schema}".events (message_id, type, event, user_id, anonymous_id, source, '
            '"timestamp", received_at, properties) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)',
            [
                (
                    e["messageId"], e["type"], e.get("event"), e.get("userId"), e["anonymousId"], "test",
                    e["timestamp"], e["receivedAt"], json.dumps(e.get("properties")) if "properties" in e
                    else None,
                )
                for e in kept
            ],
        )  # fmt: skip
        cur.executemany(
            f'INSERT INTO "{schema}".experiment_assignments VALUES (%s, %s, %s, %s)',
            [(exp, user, variant, first) for (exp, user), (variant, first) in assignments.items()],
        )
    return assignments


def _key(e: dict[str, Any]) -> str:
    return e.get("userId") or e["anonymousId"]


def _exposure(e: dict[str, Any]) -> tuple[str, str] | None:
    if e["type"] != "track" or e.get("event") != "Experiment Viewed":
        return None
    p = e.get("properties") or {}
    exp, var = (
        p.get("experiment_id") or p.get("experiment_name"),
        p.get("variation_id") or p.get("variation_name"),
    )
    return (str(exp), str(var)) if exp is not None and var is not None else None


def expected_counts(events: list[dict[str, Any]], experiment: str, goal: str) -> dict[str, tuple[int, int]]:
    """variant -> (users, converters), by brute force over every assigned user."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in deduplicate(events):
        by_user[_key(e)].append(e)
    assignments = truth(events)["experiment_assignments"]
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (exp, user), (variant, first) in assignments.items():
        if exp != experiment:
            continue
        out[variant][0] += 1
        for e in by_user[user]:
            name = e.get("event") if e["type"] == "track" else e["type"]
            if e["timestamp"] < first or name != goal:
                continue
            if goal == "Experiment Viewed" and (_exposure(e) or ("",))[0] != experiment:
                continue
            out[variant][1] += 1
            break
    return {v: (u, c) for v, (u, c) in out.items()}


def expected_multi(events: list[dict[str, Any]], experiment: str) -> tuple[int, int]:
    seen: dict[str, set[str]] = defaultdict(set)
    for e in deduplicate(events):
        x = _exposure(e)
        if x and x[0] == experiment:
            seen[_key(e)].add(x[1])
    return sum(len(v) > 1 for v in seen.values()), len(seen)


def now_utc() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------- tests

SEED_START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def conn(settings: Settings, pg_schema: str) -> Iterator[Any]:
    connection = psycopg2.connect(settings.warehouse_dsn)
    try:  # the loader's migrations define the real tables; DESIGN.md's DDL otherwise
        from eventpipe.loader.dialects import get_dialect
        from eventpipe.loader.migrations import migrate
    except ImportError:
        with connection, connection.cursor() as cur:
            cur.execute(DDL.format(s=f'"{pg_schema}"'))
    else:
        migrate(connection, get_dialect("postgres"), pg_schema)
    yield connection
    connection.close()


@pytest.fixture
def loaded(conn: Any, pg_schema: str) -> list[dict[str, Any]]:
    events = generate(seed=3, users=400, start=SEED_START)
    insert(conn, pg_schema, events)
    return events


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_users_and_converters_equal_the_truth(
    conn: Any, pg_schema: str, loaded: list[dict[str, Any]], experiment: str
) -> None:
    for goal in GOALS:
        got = {
            c.variant: (c.users, c.converters) for c in wh.variant_counts(conn, pg_schema, experiment, goal)
        }
        assert got == expected_counts(loaded, experiment, goal), goal
    multi = wh.multi_exposure(conn, pg_schema, experiment)
    assert (multi.users, multi.exposed_users) == expected_multi(loaded, experiment)
    assert multi.users > 0  # the generated data does exercise the check


def test_sql_objects_equal_the_python_numbers(
    conn: Any, pg_schema: str, loaded: list[dict[str, Any]]
) -> None:
    ensure_report_views(conn, pg_schema)
    ensure_report_views(conn, pg_schema)  # idempotent
    with conn.cursor() as cur:
        for experiment in EXPERIMENTS:
            for goal in GOALS:
                python = [
                    (c.variant, c.users, c.converters)
                    for c in wh.variant_counts(conn, pg_schema, experiment, goal)
                ]
                cur.execute(
                    sql.SQL("SELECT variant, users, converters FROM {}(%s, %s) ORDER BY variant").format(
                        sql.Identifier(pg_schema, "experiment_results")
                    ),
                    (experiment, goal),
                )
                assert cur.fetchall() == python, (experiment, goal)
                cur.execute(
                    sql.SQL(
                        "SELECT u.variant, u.users, coalesce(c.converters, 0) FROM {} u LEFT JOIN {} c "
                        "ON c.experiment_id = u.experiment_id AND c.variant = u.variant AND c.event = %s "
                        "WHERE u.experiment_id = %s ORDER BY u.variant"
                    ).format(
                        sql.Identifier(pg_schema, "experiment_variant_users"),
                        sql.Identifier(pg_schema, "experiment_conversions"),
                    ),
                    (goal, experiment),
                )
                assert cur.fetchall() == python, (experiment, goal)
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg_schema, "experiment_exposures"))
        )
        exposures = sum(1 for e in deduplicate(loaded) if _exposure(e))
        assert cur.fetchone()[0] == exposures


def test_experiment_list(conn: Any, pg_schema: str, loaded: list[dict[str, Any]]) -> None:
    items = {x.experiment_id: x for x in wh.experiments(conn, pg_schema)}
    assert set(items) == set(EXPERIMENTS)
    for exp, item in items.items():
        mine = [e for e in deduplicate(loaded) if (_exposure(e) or ("",))[0] == exp]
        assert item.exposures == len(mine)
        assert item.exposed_users == len({_key(e) for e in mine})
        assert item.variants == sorted({_exposure(e)[1] for e in mine})  # type: ignore[index]
        assert format_ts(item.first_exposure) == min(e["timestamp"] for e in mine)


def test_report_freshness_warnings(conn: Any, pg_schema: str, loaded: list[dict[str, Any]]) -> None:
    newest = max(e["receivedAt"] for e in deduplicate(loaded))
    now = datetime.fromisoformat(newest.replace("Z", "+00:00")) + timedelta(minutes=5)
    report = service.experiment_report(conn, pg_schema, "exp-a", "Order Completed", now, stale_minutes=10)
    codes = {w.split(":")[0] for w in report.warnings}
    assert "stale" not in codes and "provisional" in codes and "multiple_variants" in codes
    later = now + timedelta(hours=2)
    days = [(SEED_START + timedelta(days=d)).date() for d in range((later - SEED_START).days + 1)]
    with conn, conn.cursor() as cur:
        for day in days:
            cur.execute(f'INSERT INTO "{pg_schema}".day_status (day, is_final) VALUES (%s, true)', (day,))
    report = service.experiment_report(conn, pg_schema, "exp-a", "Order Completed", later, stale_minutes=10)
    codes = {w.split(":")[0] for w in report.warnings}
    assert "stale" in codes and "provisional" not in codes
    facts = wh.load_facts(conn, pg_schema)
    assert facts.final_days == set(days) and facts.loaded_objects == 0


def _cli(settings: Settings, schema: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "EVENTPIPE_WAREHOUSE_DSN": settings.warehouse_dsn,
        "EVENTPIPE_WAREHOUSE_SCHEMA": schema,
    }
    exe = Path(sys.executable).with_name("eventpipe")
    return subprocess.run([str(exe), *argv], env=env, capture_output=True, text=True, timeout=60)


def test_cli_json_report_and_list(settings: Settings, pg_schema: str, loaded: list[dict[str, Any]]) -> None:
    done = _cli(
        settings, pg_schema, "experiments", "report", "exp-b", "--goal", "Signed Up", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == ["experiment", "goal", "control", "variants", "srm_p_value", "warnings"]
    assert doc["experiment"] == "exp-b" and doc["control"] == "control"
    assert {v["variant"]: (v["users"], v["converters"]) for v in doc["variants"]} == expected_counts(
        loaded, "exp-b", "Signed Up"
    )
    assert all(
        set(v) == {"variant", "users", "converters", "rate", "lift", "ci95", "p_value"}
        for v in doc["variants"]
    )
    table = _cli(
        settings, pg_schema, "experiments", "report", "exp-a", "--goal", "page", "--control", "green"
    )
    assert table.returncode == 0, table.stderr
    assert "Verdict" in table.stdout
    listing = _cli(settings, pg_schema, "experiments", "list", "--format", "json")
    assert listing.returncode == 0 and {x["experiment_id"] for x in json.loads(listing.stdout)} == set(
        EXPERIMENTS
    )


def test_cli_unknown_experiment_and_variant(settings: Settings, pg_schema: str, conn: Any) -> None:
    done = _cli(settings, pg_schema, "experiments", "report", "nope", "--goal", "x", "--format", "json")
    assert done.returncode != 0 and done.stdout == ""
    assert "unknown experiment 'nope'" in done.stderr and "Traceback" not in done.stderr
    insert(conn, pg_schema, generate(seed=5, users=30, start=SEED_START))
    bad = _cli(settings, pg_schema, "experiments", "report", "exp-a", "--goal", "x", "--control", "blue")
    assert bad.returncode != 0 and "control variant 'blue' not found" in bad.stderr


def test_cli_missing_tables_is_a_clear_error(settings: Settings, pg_schema: str) -> None:
    done = _cli(settings, pg_schema, "experiments", "report", "exp-a", "--goal", "x")
    assert done.returncode != 0 and "lacks events" in done.stderr and "Traceback" not in done.stderr


def test_status_degrades_when_stages_are_missing(settings: Settings, pg_schema: str) -> None:
    nowhere = settings.model_copy(
        update={"ingest_port": 9, "kafka_bootstrap": "127.0.0.1:9", "s3_endpoint": "http://127.0.0.1:9",
                "stream_web_port": 9, "loader_port": 9}
    )  # fmt: skip
    result = service.status(nowhere, build_s3(nowhere), now_utc(), 10)
    states = {s.stage: s.state for s in result.stages}
    assert states["ingest"] == states["stream"] == states["s3"] == "not running"
    assert states["kafka"] in ("not running", "unknown")
    assert states["nightly"] == "unknown" and states["loader"] == "unknown"
    assert len(result.days) == 7 and {state for _, state in result.days} == {"unknown"}


def test_conversion_boundaries_by_hand(conn: Any, pg_schema: str) -> None:
    """At the exposure instant counts, before it does not; the user key is userId, else anonymousId."""
    t0, ev = SEED_START, "Experiment Viewed"
    rows = [
        ("a1", "track", ev, None, "anon-a", t0, {"experiment_id": "e", "variation_id": "control"}),
        ("a2", "track", "Buy", None, "anon-a", t0, None),  # same instant: converts
        ("b1", "track", ev, "user-b", "anon-b", t0, {"experiment_name": "e", "variation_name": "t"}),
        ("b2", "track", "Buy", "user-b", "anon-b", t0 - timedelta(seconds=1), None),  # before: no
        ("b3", "track", "Buy", None, "anon-b", t0 + timedelta(hours=1), None),  # other key: no
        ("c1", "track", ev, None, "anon-c", t0, {"experiment_id": "e", "variation_id": "t"}),
        ("c2", "track", ev, None, "anon-c", t0 + timedelta(1), {"experiment_id": "e", "variation_id": "c"}),
        ("c3", "page", None, None, "anon-c", t0 + timedelta(2), None),
        ("c4", "track", "Buy", None, "anon-c", t0 + timedelta(2), None),
    ]  # fmt: skip
    with conn, conn.cursor() as cur:
        for mid, kind, event, uid, aid, ts, props in rows:
            cur.execute(
                f'INSERT INTO "{pg_schema}".events (message_id, type, event, user_id, anonymous_id, source, '
                '"timestamp", received_at, properties) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)',
                (mid, kind, event, uid, aid, "test", ts, ts, json.dumps(props) if props else None),
            )
        cur.executemany(
            f'INSERT INTO "{pg_schema}".experiment_assignments VALUES (%s, %s, %s, %s)',
            [("e", "anon-a", "control", t0), ("e", "user-b", "t", t0), ("e", "anon-c", "t", t0)],
        )
    counts = {c.variant: (c.users, c.converters) for c in wh.variant_counts(conn, pg_schema, "e", "Buy")}
    assert counts == {"control": (1, 1), "t": (2, 1)}
    pages = {c.variant: (c.users, c.converters) for c in wh.variant_counts(conn, pg_schema, "e", "page")}
    assert pages == {"control": (1, 0), "t": (2, 1)}
    multi = wh.multi_exposure(conn, pg_schema, "e")
    assert (multi.users, multi.exposed_users) == (1, 3)
