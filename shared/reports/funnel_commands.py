"""CLI sub-commands ``eventpipe funnel`` and ``eventpipe retention`` (docs/funnels.md).

Exit codes as the experiment reports': 0 done, 1 the warehouse failed, 2 the request
cannot be answered (bad dates, steps, ``--within``, unknown control). Errors are one
line on stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.console import Console

from eventpipe.cli import _day
from eventpipe.errors import WarehouseError
from eventpipe.reports.commands import EXIT_REQUEST, EXIT_WAREHOUSE, _fail
from eventpipe.reports.errors import ReportError


def _answer(args: argparse.Namespace, ask: Callable[[Any, str], dict[str, Any]],
            show: Callable[[dict[str, Any], Console], None]) -> int:  # fmt: skip
    """Run ``ask(conn, schema)`` on the warehouse, print its JSON or ``show`` it as a table."""
    from eventpipe.reports.render import to_json
    from eventpipe.reports.warehouse import connect
    from eventpipe.settings import get_settings

    settings = get_settings()
    try:
        with connect(settings) as conn:
            result = ask(conn, settings.warehouse_schema)
    except ReportError as exc:
        return _fail(EXIT_REQUEST, str(exc))
    except WarehouseError as exc:
        return _fail(EXIT_WAREHOUSE, str(exc))
    if args.format == "json":
        print(to_json(result))
    else:
        show(result, Console(emoji=False))
    return 0


def _funnel(args: argparse.Namespace) -> int:
    from eventpipe.reports import funnel_render, funnel_service
    from eventpipe.reports.funnels import FunnelQuery, parse_within

    try:  # refused before any connection
        query = FunnelQuery(tuple(args.step), args.first, args.last, parse_within(args.within))
    except ReportError as exc:
        return _fail(EXIT_REQUEST, str(exc))
    return _answer(
        args,
        lambda conn, schema: funnel_service.funnel(conn, schema, query, args.experiment, args.control),
        lambda result, console: funnel_render.print_funnel(result, console, args.within.strip()),
    )


def _retention(args: argparse.Namespace) -> int:
    from eventpipe.reports import funnel_render, funnel_service
    from eventpipe.reports.funnels import RetentionQuery

    try:
        query = RetentionQuery(args.cohort_event, args.return_event, args.period, args.first, args.last)
    except ReportError as exc:
        return _fail(EXIT_REQUEST, str(exc))
    title = f"Retention: {query.cohort_event} then {query.return_event}, by {query.period}"
    return _answer(
        args,
        lambda conn, schema: funnel_service.retention(conn, schema, query),
        lambda result, console: funnel_render.print_retention(result, console, query.period, title),
    )


def _range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="first", type=_day, required=True, help="first day (UTC), YYYY-MM-DD")
    parser.add_argument("--to", dest="last", type=_day, required=True, help="last day (UTC), YYYY-MM-DD")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def register(sub: argparse._SubParsersAction) -> None:
    funnel = sub.add_parser("funnel", help="persons through a sequence of events (identity-stitched)")
    funnel.add_argument(
        "--step", action="append", required=True, metavar="EVENT",
        help="a track event name, or page/screen; give at least two, in order",
    )  # fmt: skip
    funnel.add_argument(
        "--within", default="24h", help="each step within this of entry: 30m, 24h, 7d (default 24h)"
    )
    funnel.add_argument("--experiment", help="one funnel per variant, last step tested against control")
    funnel.add_argument("--control", default="control", help="control variant (default: control)")
    _range(funnel)
    funnel.set_defaults(handler=_funnel)

    retention = sub.add_parser("retention", help="cohorts by first event, and who came back each period")
    retention.add_argument("--cohort-event", required=True, metavar="EVENT")
    retention.add_argument("--return-event", required=True, metavar="EVENT")
    retention.add_argument("--period", choices=("day", "week"), default="day")
    _range(retention)
    retention.set_defaults(handler=_retention)
