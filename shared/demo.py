"""``eventpipe demo``: a synthetic product's traffic through the running local stack.

Sends several experiments, a funnel and anonymous -> identified users to the collector
with a progress bar, waits until the warehouse has every event and the streamed counts
caught up, then prints the engagement table, experiment reports (persons), how far raw ids
would have been off without identity stitching, and where to look next.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eventpipe import demosql
from eventpipe.loader.dialects import Statement
from eventpipe.reports import stitching
from eventpipe.reports import warehouse as wh
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages
from eventpipe.terminal import safe

BATCH = 100


def send(settings: Settings, batch_messages: list[dict[str, Any]], console: Console) -> set[str]:
    """POST in batches of 100; a 503 is retried (the same messageIds: dedup makes it safe)."""
    url = f"http://127.0.0.1:{settings.ingest_port}/v1/batch"
    write_key = next(iter(settings.write_key_map))
    accepted: set[str] = set()
    columns = (TextColumn("sending events"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with httpx.Client(auth=(write_key, ""), timeout=30) as client, Progress(*columns, console=console) as bar:
        task = bar.add_task("send", total=len(batch_messages))
        for start in range(0, len(batch_messages), BATCH):
            chunk = batch_messages[start : start + BATCH]
            for attempt in range(10):
                response = client.post(url, json={"batch": chunk})
                if response.status_code == 200:
                    break
                if response.status_code != 503 or attempt == 9:
                    raise RuntimeError(f"collector answered {response.status_code}: {response.text}")
                time.sleep(float(response.headers.get("retry-after", 1)))
            accepted.update(m["messageId"] for m in chunk)
            bar.advance(task, len(chunk))
    return accepted


def _scalar(conn: Any, query: Statement, params: tuple = ()) -> Any:
    with conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    return row[0] if row else None


def wait_for_warehouse(settings: Settings, ids: set[str], console: Console, timeout_s: float = 180) -> None:
    """Until every sent messageId is in ``events`` and the streamed DAU rows match them."""
    schema = settings.warehouse_schema
    loaded_q, engaged_q, days_q, counted_q = (
        demosql.in_schema(template, schema)
        for template in (demosql.LOADED, demosql.ENGAGED, demosql.DAYS, demosql.COUNTED)
    )
    id_list = sorted(ids)
    deadline = time.monotonic() + timeout_s
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with wh.connect(settings) as conn, Progress(*columns, console=console) as bar:
        loaded_task = bar.add_task("loaded into the warehouse", total=len(ids))
        counted_task = bar.add_task("counted by the stream", total=None)
        while True:
            loaded = _scalar(conn, loaded_q, (id_list,))
            engaged = _scalar(conn, engaged_q, (id_list,))
            days = _scalar(conn, days_q, (id_list,)) or []
            counted = _scalar(conn, counted_q, (days,))
            bar.update(loaded_task, completed=loaded)
            bar.update(counted_task, total=engaged, completed=min(counted, engaged))
            if loaded == len(ids) and counted >= engaged:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"after {timeout_s:.0f}s: {loaded}/{len(ids)} loaded, {counted}/{engaged} counted; "
                    "see `eventpipe status` and .local/log/"
                )
            time.sleep(1)


def engagement_table(settings: Settings, console: Console) -> None:
    query = demosql.in_schema(demosql.RECENT_ENGAGEMENT, settings.warehouse_schema)
    with wh.connect(settings) as conn, conn.cursor() as cur:
        cur.execute(query)
        rows = cur.fetchall()
    table = Table(title="engagement_daily (event '*' = any engagement event: its users are DAU)")
    for column in ("day", "event", "events", "users", "final?"):
        table.add_column(column, justify="right" if column in ("events", "users") else "left")
    for day, event, events, users, final in rows:
        table.add_row(str(day), safe(event), f"{events:,}", f"{users:,}", "final" if final else "provisional")
    console.print(table)


def stitching_tables(settings: Settings, console: Console, experiments: tuple[str, ...], goal: str) -> None:
    """How far raw ids (no identity stitching) would have been off, on this very data."""
    schema = settings.warehouse_schema
    with wh.connect(settings) as conn:
        console.print(stitching.dau_table(wh.daily_users(conn, schema)))
        for experiment in experiments:
            rows = stitching.experiment_drift(conn, schema, experiment, goal)
            console.print(stitching.experiment_table(experiment, goal, rows))


def product_tables(console: Console) -> None:
    """The synthetic product's purchase funnel and a daily retention triangle (the stack keeps
    earlier demos' days, so later runs show more cohorts), as ``eventpipe funnel``/``retention``."""
    from eventpipe.cli import main as cli
    from eventpipe.synthetic import FUNNEL

    today = datetime.now(UTC).date()
    last_week, yesterday = (today - timedelta(days=6)).isoformat(), (today - timedelta(days=1)).isoformat()
    console.print()
    cli(
        [
            "funnel",
            *[arg for step in FUNNEL for arg in ("--step", step)],
            "--from",
            yesterday,
            "--to",
            str(today),
        ]
    )
    cli(["retention", "--cohort-event", "page", "--return-event", "page", "--period", "day",
         "--from", last_week, "--to", str(today)])  # fmt: skip


def main(settings: Settings, users: int = 1000, seed: int | None = None) -> int:
    console = Console(emoji=False)  # event names are data: ":x:" stays text
    seed = seed if seed is not None else int(datetime.now(UTC).timestamp())
    traffic = list(messages(seed=seed, shape=TrafficShape(users=users)))
    console.print(f"[bold]eventpipe demo[/]: {users} users, {len(traffic):,} messages (seed {seed})")
    ids = send(settings, traffic, console)
    wait_for_warehouse(settings, ids, console)
    engagement_table(settings, console)
    from eventpipe.cli import main as cli  # the same report the PMs run themselves

    for experiment in ("checkout-button", "pricing-page"):
        cli(["experiments", "report", experiment, "--goal", "Order Completed"])
    stitching_tables(settings, console, ("checkout-button", "pricing-page"), "Order Completed")
    product_tables(console)
    console.print(
        "\n[bold]Where to look next[/]\n"
        f"  API docs        http://127.0.0.1:{settings.ingest_port}/docs\n"
        "  Prometheus      http://127.0.0.1:9090  (alerts: /alerts)\n"
        f"  metrics         http://127.0.0.1:{settings.ingest_port}/metrics, "
        f"http://127.0.0.1:{settings.stream_web_port}/metrics, http://127.0.0.1:{settings.loader_port}/metrics\n"
        "  warehouse       psql postgresql://eventpipe:eventpipe@127.0.0.1:5432/eventpipe\n"
        "  more            eventpipe experiments list | eventpipe status | "
        "eventpipe reprocess --date YYYY-MM-DD"
    )
    return 0
