"""`eventpipe demo` prints numbers a newcomer will trust: they must equal the warehouse's."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from psycopg2 import sql

from eventpipe.synthetic import FUNNEL
from tests.reference import truth
from tests.support import funnels
from tests.support.pipeline import EVENTPIPE, child_env, running_pipeline
from tests.support.warehouse import events, query

pytestmark = pytest.mark.e2e
DAU_ROW = re.compile(r"│ (\d{4}-\d{2}-\d{2}) │\s+([\d,]+) │\s+([\d,]+) │\s+([+-][\d.]+%|-) │")
FUNNEL_ROW = re.compile(
    r"│\s+(\d) │ (?:Product Viewed|Product Added|Checkout Started|Order Completed)\s+│\s+([\d,]+) │"
)
ROW = re.compile(r"│ (\d{4}-\d{2}-\d{2}) │ (.+?)\s+│\s+([\d,]+) │\s+([\d,]+) │ (provisional|final)\s+│")


def test_demo_prints_the_warehouse_numbers(topics, s3, pg_schema, tmp_path):
    with running_pipeline(topics, tmp_path) as pipe:
        env = {**child_env(pipe.settings), "COLUMNS": "200", "TERM": "dumb"}
        done = subprocess.run(
            [EVENTPIPE, "demo", "--users", "150", "--seed", "5"], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        printed = {
            (d, e): (int(c.replace(",", "")), int(u.replace(",", "")))
            for d, e, c, u, _ in ROW.findall(done.stdout)
        }
        assert printed, done.stdout
        rows = query(
            topics.warehouse_dsn,
            sql.SQL("SELECT day::text, event, event_count, user_count FROM {}.engagement_daily").format(
                sql.Identifier(topics.warehouse_schema)
            ),
        )
        assert printed == {(d, e): (c, u) for d, e, c, u in rows}
        report = subprocess.run(
            [EVENTPIPE, "experiments", "report", "checkout-button", "--goal", "Order Completed",
             "--format", "json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr
        import json

        for variant in json.loads(report.stdout)["variants"]:
            assert re.search(
                rf"│ {re.escape(variant['variant'])}\s+│\s+{variant['users']} │\s+{variant['converters']} │",
                done.stdout,
            )
        # how far raw ids would have been off: DAU per day, persons vs raw ids, as the reference says
        stored = events(topics.warehouse_dsn, topics.warehouse_schema)
        persons, raw = truth(stored), truth(stored, stitch=False)
        want = {
            day.isoformat(): (users, raw["engagement_daily"][(day, "*")][1])
            for (day, event), (_, users) in persons["engagement_daily"].items()
            if event == "*"
        }
        shown = {
            d: (int(p.replace(",", "")), int(r.replace(",", "")))
            for d, p, r, _ in DAU_ROW.findall(done.stdout)
        }
        assert shown == want
        assert any(p < r for p, r in want.values())  # the demo's traffic does need stitching
        # the purchase funnel, persons per step, as the independent reference says
        today = datetime.now(UTC).date()
        expected = funnels.funnel(stored, FUNNEL, today - timedelta(days=1), today, timedelta(hours=24))
        shown_steps = [int(n.replace(",", "")) for _, n in FUNNEL_ROW.findall(done.stdout)]
        assert shown_steps == expected and expected[0] > 0
        cohorts = funnels.retention(stored, "page", "page", "day", today - timedelta(days=6), today)[
            "cohorts"
        ]
        for cohort in cohorts:  # each cohort's row: its day and its persons (the triangle's first column)
            assert re.search(rf"│ {cohort['cohort']}\s+│\s+{cohort['persons']:,} │", done.stdout), cohort
        assert cohorts and "cohort (day)" in done.stdout
