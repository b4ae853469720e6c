"""The fault-suite checker: what the warehouse must hold after a run of ``LoadGenerator``.

The truth is computed from what the load generator SENT (``tests/support/faults/expected.py``:
payloads, the ``receivedAt`` of each 2xx answer, an independent skew formula), never from
the warehouse's own rows. After the faults stop and the pipeline settles:

- every ``ok`` id (2xx) is in ``events`` exactly once (``lost`` counts the missing);
- no ``failed`` id (4xx) is anywhere: not in ``events``, not in the raw S3 archive;
- ``unknown`` ids (timeout/5xx/connection error) are there at most once;
- every stored row equals the payload sent, field by field (``fields_differing``);
- the streamed aggregates, before any reprocess, equal ``tests/reference.py``'s truth over
  the sent events per raw id, as the stream counts (``streamed_equal``; exact for in-order
  input, whatever was killed);
- after ``eventpipe reprocess`` of every day, they equal its per-person truth (``final_equal``).
Aggregates are compared as lists of rows, so a duplicated row shows.

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

from eventpipe.devstack.procs import spawn
from eventpipe.s3 import iter_gzip_lines, list_keys, s3_client
from eventpipe.settings import Settings
from tests.support.faults.aggregates import (
    AggregateRows,
    aggregate_rows,
    compare,
    settled_compare,
    truth_rows,
)
from tests.support.faults.expected import COLUMNS, Expectation, expectation, group_rows
from tests.support.faults.load import FAILED, OK, UNKNOWN, Outcomes
from tests.support.faults.warehouse import query, table
from tests.support.pipeline import EVENTPIPE, ROOT, child_env
from tests.support.sent import iso_ms

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
    fields_differing: int = 0  # stored rows whose fields differ from the payload sent
    streamed_equal: bool | None = None  # aggregates == truth before any reprocess
    streamed_required: bool = True  # False: input out of order (retries, broker outage)
    mismatches: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)  # that the fault hit its dangerous moment
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.failed_stored == 0
            and self.fields_differing == 0
            and (self.streamed_equal is not False or not self.streamed_required)
            and self.final_equal is not False
        )

    def line(self) -> str:
        return (
            f"{self.scenario}: sent={self.sent} ok={self.ok} failed={self.failed} unknown={self.unknown} "
            f"lost={self.lost} duplicated={self.duplicated} failed_stored={self.failed_stored} "
            f"fields_differing={self.fields_differing} streamed_equal={self.streamed_equal} "
            f"final_equal={self.final_equal} statuses={self.statuses} evidence={self.evidence} "
            f"{self.mismatches[:8]}"
        )


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
        "from eventpipe.bootstrap import build_reprocess;"
        "from eventpipe.loader.reprocess.pipeline import run_day;"
        "settings = Settings();"
        f"run_day(settings, datetime.date.fromisoformat({day.isoformat()!r}), runner={runner!r}, "
        "adapters=build_reprocess(settings))"
    )
    return [sys.executable, "-c", code]


def start_reprocess(settings: Settings, day: date, log: Path) -> subprocess.Popen:
    return spawn(reprocess_command(settings, day), log, cwd=ROOT, env=child_env(settings))


def reprocess(settings: Settings, days: list[date], log: Path, timeout_s: float = 300) -> None:
    for day in days:
        proc = start_reprocess(settings, day, log)
        if proc.wait(timeout=timeout_s) != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"reprocess of {day} exited with {proc.returncode}:\n{tail}")


def stored_rows(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every ``events`` row by message_id, timestamps rendered as the contract writes them."""
    try:
        rows = query(
            settings,
            sql.SQL("SELECT message_id, {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table(settings, "events")
            ),
        )
    except psycopg2.errors.UndefinedTable:
        return {}
    rendered = []
    for mid, *values in rows:
        row = dict(zip(COLUMNS, values, strict=True))
        for column in ("timestamp", "received_at", "sent_at", "original_timestamp"):
            row[column] = iso_ms(row[column]) if row[column] is not None else None
        rendered.append({"message_id": mid, **row})
    return group_rows(rendered)


def event_days(events: list[dict[str, Any]]) -> list[date]:
    return sorted({date.fromisoformat(e["timestamp"][:10]) for e in events})


# ---------------------------------------------------------------- the check
class Checker:
    def __init__(self, settings: Settings, scenario: str, logs: Path) -> None:
        self.settings, self.scenario, self.logs = settings, scenario, logs
        self.started = time.monotonic()
        self.expected: AggregateRows = {}  # the truth from what was sent, after check()
        self.expectation = Expectation()

    def check(
        self,
        outcomes: Outcomes,
        *,
        reprocess_days: bool = True,
        settle_s: float = 180.0,
        check_raw: bool = True,
        in_order: bool = True,
        evidence: list[str] | None = None,
    ) -> Result:
        """``in_order=False``: the input reached Kafka out of order (client retries, a
        broker outage), so the streamed aggregates are reported but need not be exact."""
        counts = settle(self.settings, outcomes, settle_s)
        ok, failed, unknown = (outcomes.ids(x) for x in (OK, FAILED, UNKNOWN))
        stored = set(counts)
        failed_stored = failed & stored
        if check_raw:
            failed_stored |= failed & set(raw_ids(self.settings))
        mine = ok | failed | unknown
        self.expectation = sent = expectation(
            outcomes, {m: r for m, r in stored_rows(self.settings).items() if m in mine}
        )
        self.expected = truth_rows(sent.events)
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
            fields_differing=len(sent.differing),
            streamed_required=in_order,
            statuses=dict(outcomes.statuses),
            evidence=list(evidence or []),
        )
        if result.lost:
            result.mismatches.append(f"lost e.g. {sorted(ok - stored)[:5]}")
        if result.failed_stored:
            result.mismatches.append(f"failed but stored e.g. {sorted(failed_stored)[:5]}")
        result.mismatches += sent.lines()
        streamed = settled_compare(self.settings, truth_rows(sent.events, stitch=False))
        result.streamed_equal = not streamed
        result.mismatches += [f"streamed {d}" for d in streamed]
        if reprocess_days:
            reprocess(self.settings, event_days(sent.events), self.logs / "reprocess.log")
            final = compare(self.expected, aggregate_rows(self.settings))
            result.final_equal = not final
            result.mismatches += [f"final {d}" for d in final]
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
