"""CLI sub-commands ``eventpipe experiments list|report`` and ``eventpipe status``.

Registered by ``eventpipe.cli`` through ``register(subparsers)``. Exit codes: 0 done,
1 the warehouse failed, 2 the request cannot be answered (unknown experiment or variant,
bad ``--weights``). Errors go to stderr as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from eventpipe.errors import WarehouseError
from eventpipe.reports.analysis import MIN_USERS
from eventpipe.reports.errors import ReportError

EXIT_WAREHOUSE, EXIT_REQUEST = 1, 2


def parse_weights(items: list[str] | None) -> dict[str, float] | None:
    """``["control=50", "green=50"]`` or ``["control=1,green=1"]`` -> ``{"control": 50.0, ...}``."""
    if not items:
        return None
    weights: dict[str, float] = {}
    for item in (part for raw in items for part in raw.split(",") if part.strip()):
        name, sep, value = item.strip().rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name or not weight > 0 or weight == float("inf"):
            raise ReportError(f"--weights: expected VARIANT=WEIGHT with a positive weight, got {item!r}")
        weights[name] = weight
    return weights


def _fail(code: int, message: str) -> int:
    print(f"eventpipe: error: {message}", file=sys.stderr)
    return code


def _stale_minutes(args: argparse.Namespace, default: float) -> float:
    return args.stale_minutes if args.stale_minutes is not None else default


def _report(args: argparse.Namespace) -> int:
    from eventpipe.reports import render, service
    from eventpipe.reports.warehouse import connect
    from eventpipe.settings import get_settings
    from eventpipe.timeutil import utcnow

    settings = get_settings()
    try:
        with connect(settings) as conn:
            report = service.experiment_report(
                conn,
                settings.warehouse_schema,
                args.experiment,
                args.goal,
                now=utcnow(),
                control=args.control,
                weights=parse_weights(args.weights),
                min_users=args.min_users,
                stale_minutes=_stale_minutes(args, settings.unloaded_alert_minutes),
            )
    except ReportError as exc:
        return _fail(EXIT_REQUEST, str(exc))
    except WarehouseError as exc:
        return _fail(EXIT_WAREHOUSE, str(exc))
    if args.format == "json":
        print(render.to_json(report.to_json()))
    else:
        render.report_table(report, Console(emoji=False))
    return 0


def _list(args: argparse.Namespace) -> int:
    from eventpipe.reports import render
    from eventpipe.reports import warehouse as wh
    from eventpipe.settings import get_settings

    settings = get_settings()
    try:
        with wh.connect(settings) as conn:
            items = wh.experiments(conn, settings.warehouse_schema)
    except WarehouseError as exc:
        return _fail(EXIT_WAREHOUSE, str(exc))
    if args.format == "json":
        print(render.experiments_json(items))
    else:
        render.experiments_table(items, Console(emoji=False))
    return 0


def _status(args: argparse.Namespace) -> int:
    from eventpipe.bootstrap import build_s3
    from eventpipe.reports import render, service
    from eventpipe.settings import get_settings
    from eventpipe.timeutil import utcnow

    settings = get_settings()
    result = service.status(
        settings,
        build_s3(settings),
        utcnow(),
        _stale_minutes(args, settings.unloaded_alert_minutes),
        args.days,
    )
    if args.format == "json":
        print(render.status_json(result))
    else:
        render.status_table(result, Console(emoji=False))
    return 0


def _format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table")


def _stale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stale-minutes",
        type=float,
        default=None,
        help="data older than this is stale (default: EVENTPIPE_UNLOADED_ALERT_MINUTES)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    experiments = sub.add_parser("experiments", help="experiment results from the warehouse")
    commands = experiments.add_subparsers(dest="experiments_command", required=True)

    listing = commands.add_parser("list", help="experiments with exposures, variants and dates")
    _format(listing)
    listing.set_defaults(handler=_list)

    report = commands.add_parser("report", help="per-variant conversion, lift, significance, health")
    report.add_argument("experiment")
    report.add_argument("--goal", required=True, help="goal event: a track event name, or page/screen")
    report.add_argument("--control", default="control", help="control variant (default: control)")
    report.add_argument(
        "--weights",
        nargs="+",
        metavar="VARIANT=WEIGHT",
        help="intended split for the sample ratio check (default: even)",
    )
    report.add_argument("--min-users", type=int, default=MIN_USERS, help="minimum users per variant")
    _stale(report)
    _format(report)
    report.set_defaults(handler=_report)

    status = sub.add_parser("status", help="how current each pipeline stage is; final vs provisional days")
    status.add_argument("--days", type=int, default=7, help="recent days to show (default 7)")
    _stale(status)
    _format(status)
    status.set_defaults(handler=_status)
