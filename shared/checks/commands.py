"""CLI ``eventpipe checks run [--date D] [--format table|json] [--file PATH ...]``: the SodaCL
checks and the dbt project's tests (docs/checks.md), one table.

Exit codes: 0 every check passed; 1 a check failed or could not run; 2 nothing ran (the
warehouse or Soda's configuration failed). Results are recorded in ``check_results``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from eventpipe.bootstrap import build_warehouse
    from eventpipe.checks import results
    from eventpipe.checks.run import record, run_all
    from eventpipe.errors import EventpipeError
    from eventpipe.settings import get_settings
    from eventpipe.timeutil import utcnow

    settings = get_settings()
    now = utcnow()
    day = args.date or (now.date() - timedelta(days=1))  # default: yesterday, the newest closed day
    run = run_all(settings, day, now, [Path(p) for p in args.file or []])
    code = results.exit_code(run.rows, run.errors)
    if run.rows:
        wh = build_warehouse(settings, application_name="eventpipe-checks")
        try:
            wh.run(lambda conn: record(conn, wh.schema, run))
        except EventpipeError as exc:  # the adapter translates the driver's errors
            print(f"eventpipe checks: results not recorded: {str(exc).strip()}", file=sys.stderr)
            code = 2
        finally:
            wh.close()
    if args.format == "json":
        from eventpipe.reports.render import to_json

        print(to_json(results.as_json(day.isoformat(), run.rows, run.errors)))
    else:
        Console(highlight=False).print(results.table(day.isoformat(), run.rows))
    for error in run.errors:
        print(f"eventpipe checks: {error.strip()}", file=sys.stderr)
    return code


def register(sub: argparse._SubParsersAction) -> None:
    from eventpipe.cli import _day

    checks = sub.add_parser("checks", help="data tests (Soda Core checks and dbt tests) on the warehouse")
    commands = checks.add_subparsers(dest="checks_command", required=True)
    run = commands.add_parser("run", help="run every check, record the results; exit 1 if one fails")
    run.add_argument("--date", type=_day, default=None, help="the day under test (UTC, default yesterday)")
    run.add_argument("--file", action="append", help="an extra SodaCL file or folder (repeatable)")
    run.add_argument("--format", choices=("table", "json"), default="table")
    run.set_defaults(handler=_run)
