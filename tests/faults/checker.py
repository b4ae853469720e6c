"""The fault-suite checker: what the warehouse must hold after a run of ``LoadGenerator``.

After the faults stop and the pipeline settles:

- every ``ok`` id (2xx) is in ``events`` exactly once (``lost`` counts the missing);
- no ``failed`` id (4xx) is anywhere: not in ``events``, not in the raw S3 archive;
- ``unknown`` ids (timeout/5xx/connection error) are there at most once;
- after ``eventpipe reprocess`` of every day the events fall on, the aggregate tables equal
  ``tests/reference.py``'s truth recomputed from the warehouse's own ``events`` rows.

``Checker.check(...)`` returns a ``Result`` (one row of docs/reliability.md) and appends
it to ``$EVENTPIPE_FAULTS_RESULTS`` (default ``.local/faults/results.jsonl``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from eventpipe.s3 import iter_gzip_lines, list_keys, s3_client
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts
from tests.faults.load import FAILED, OK, UNKNOWN, Outcomes
from tests.reference import truth
from tests.support.pipeline import EVENTPIPE, ROOT, settings_env

RESULTS = Path(os.environ.get("EVENTPIPE_FAULTS_RESULTS", ROOT / ".local" / "faults" / "results.jsonl"))


@dataclass
class Result:
    scenario: str
    sent: int
    ok: int
    failed: int
    unknown: int
    lost: int  # ok ids missing from events
    duplicated: int  # ids with more than one events row
    failed_stored: int  # failed ids found in events or raw/
    unknown_stored: int  # unknown ids that made it (once)
    final_equal: bool | None  # aggregates == truth after reprocess (None: not checked)
    mismatches: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.failed_stored == 0
            and self.final_equal is not False
        )

    def line(self) -> str:
        return (
            f"{self.scenario}: sent={self.sent} ok={self.ok} failed={self.failed} unknown={self.unknown} "
            f"lost={self.lost} duplicated={self.duplicated} failed_stored={self.failed_stored} "
            f"final_equal={self.final_equal} statuses={self.statuses} {self.mismatches[:5]}"
        )


def query(settings: Settings, statement: sql.Composable, args: Any = None) -> list[tuple]:
    conn = psycopg2.connect(settings.warehouse_dsn, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()
    finally:
        conn.close()


def table(settings: Settings, name: str) -> sql.Composable:
    return sql.Identifier(settings.warehouse_schema, name)


def event_id_counts(settings: Settings) -> Counter:
    try:
        rows = query(
            settings,
            sql.SQL("SELECT message_id, count(*) FROM {} GROUP BY message_id").format(
                table(settings, "events")
            ),
        )
    except psycopg2.errors.UndefinedTable:
        return Counter()
    return Counter({mid: n for mid, n in rows})


def raw_ids(settings: Settings) -> Counter:
    """messageIds in the raw S3 archive of this test's prefix (one count per line)."""
    client = s3_client(settings)
    found: Counter = Counter()
    for obj in list_keys(client, settings.s3_bucket, settings.s3_prefix + "raw/events/"):
        body = client.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])["Body"].read()
        try:
            lines = list(iter_gzip_lines(body))
        except (OSError, EOFError):  # a deliberately corrupt object (scenario 11)
            continue
        for line in lines:
            try:
                found[json.loads(line)["messageId"]] += 1
            except (ValueError, KeyError, TypeError):
                continue
    return found


def settle(
    settings: Settings, outcomes: Outcomes, timeout_s: float = 180.0, quiet_s: float = 12.0
) -> Counter:
    """Wait until every ok id is in ``events`` and the table stopped changing for ``quiet_s``."""
    ok = outcomes.ids(OK)
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while True:
        counts = event_id_counts(settings)
        total = sum(counts.values())
        if total != last:
            last, since = total, time.monotonic()
        complete = ok <= counts.keys()
        if complete and time.monotonic() - since >= quiet_s:
            return counts
        if time.monotonic() > deadline:
            return counts
        time.sleep(1.0)


# ---------------------------------------------------------------- reprocess and truth
def reprocess_command(settings: Settings, day: date, runner: str = "inline") -> list[str]:
    """``eventpipe reprocess`` when the CLI has it, else the same ``run_day`` it calls."""
    help_text = subprocess.run([EVENTPIPE, "--help"], capture_output=True, text=True, check=False).stdout
    if "reprocess" in help_text:
        return [EVENTPIPE, "reprocess", "--date", day.isoformat(), "--runner", runner]
    code = (
        "import sys, datetime;"
        "from eventpipe.settings import Settings;"
        "from eventpipe.loader.reprocess.pipeline import run_day;"
        f"run_day(Settings(), datetime.date.fromisoformat({day.isoformat()!r}), runner={runner!r})"
    )
    return [sys.executable, "-c", code]


def start_reprocess(settings: Settings, day: date, log: Path) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(
            reprocess_command(settings, day),
            env={**os.environ, **settings_env(settings)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    finally:
        out.close()


def reprocess(settings: Settings, days: list[date], log: Path, timeout_s: float = 300) -> None:
    for day in days:
        proc = start_reprocess(settings, day, log)
        if proc.wait(timeout=timeout_s) != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"reprocess of {day} exited with {proc.returncode}:\n{tail}")


def warehouse_events(settings: Settings) -> list[dict[str, Any]]:
    """The ``events`` rows read back as the event dicts the reference truth takes."""
    rows = query(
        settings,
        sql.SQL(
            "SELECT message_id, type, event, user_id, anonymous_id, previous_id, timestamp, received_at, "
            "properties FROM {}"
        ).format(table(settings, "events")),
    )
    return [
        {
            "messageId": mid, "type": kind, "event": event, "userId": uid, "anonymousId": aid,
            "previousId": previous, "timestamp": format_ts(ts), "receivedAt": format_ts(received),
            "properties": props,
        }
        for mid, kind, event, uid, aid, previous, ts, received, props in rows
    ]  # fmt: skip


def event_days(events: list[dict[str, Any]]) -> list[date]:
    return sorted({date.fromisoformat(e["timestamp"][:10]) for e in events})


def warehouse_aggregates(settings: Settings) -> dict[str, dict]:
    eng = query(
        settings,
        sql.SQL("SELECT day, event, event_count, user_count FROM {}").format(
            table(settings, "engagement_daily")
        ),
    )
    exp = query(
        settings,
        sql.SQL("SELECT day, experiment_id, variant, event, event_count, user_count FROM {}").format(
            table(settings, "experiment_daily")
        ),
    )
    asg = query(
        settings,
        sql.SQL("SELECT experiment_id, user_key, variant, first_exposed_at FROM {}").format(
            table(settings, "experiment_assignments")
        ),
    )
    return {
        "engagement_daily": {(d, e): (c, u) for d, e, c, u in eng if c or u},
        "experiment_daily": {(d, x, v, e): (c, u) for d, x, v, e, c, u in exp if c or u},
        "experiment_assignments": {(x, k): (v, format_ts(t)) for x, k, v, t in asg},
    }


def compare(expected: dict[str, dict], actual: dict[str, dict], limit: int = 20) -> list[str]:
    diffs: list[str] = []
    for name, want in expected.items():
        got = actual[name]
        for key in sorted(set(want) | set(got), key=str):
            if want.get(key) != got.get(key):
                diffs.append(f"{name}{key}: truth={want.get(key)} warehouse={got.get(key)}")
    return diffs[:limit] + ([f"... {len(diffs) - limit} more"] if len(diffs) > limit else [])


# ---------------------------------------------------------------- the check
class Checker:
    def __init__(self, settings: Settings, scenario: str, logs: Path) -> None:
        self.settings, self.scenario, self.logs = settings, scenario, logs
        self.started = time.monotonic()

    def check(
        self,
        outcomes: Outcomes,
        *,
        reprocess_days: bool = True,
        settle_s: float = 180.0,
        check_raw: bool = True,
    ) -> Result:
        counts = settle(self.settings, outcomes, settle_s)
        ok, failed, unknown = (outcomes.ids(x) for x in (OK, FAILED, UNKNOWN))
        stored = set(counts)
        failed_stored = failed & stored
        if check_raw:
            failed_stored |= failed & set(raw_ids(self.settings))
        mine = ok | failed | unknown
        result = Result(
            self.scenario,
            outcomes.sent,
            len(ok),
            len(failed),
            len(unknown),
            lost=len(ok - stored),
            duplicated=sum(1 for mid, n in counts.items() if n > 1 and mid in mine),
            failed_stored=len(failed_stored),
            unknown_stored=len(unknown & stored),
            final_equal=None,
            statuses=dict(outcomes.statuses),
        )
        if result.lost:
            result.mismatches.append(f"lost e.g. {sorted(ok - stored)[:5]}")
        if result.failed_stored:
            result.mismatches.append(f"failed but stored e.g. {sorted(failed_stored)[:5]}")
        if reprocess_days:
            events = warehouse_events(self.settings)
            reprocess(self.settings, event_days(events), self.logs / "reprocess.log")
            diffs = compare(truth(events), warehouse_aggregates(self.settings))
            result.final_equal = not diffs
            result.mismatches += diffs
        result.seconds = round(time.monotonic() - self.started, 1)
        record(result)
        return result


def record(result: Result) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(
            json.dumps({**asdict(result), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n"
        )
    sys.stderr.write(result.line() + "\n")
