"""``eventpipe rejected list|show|replay``: inspect the rejected-events archive, then re-submit
(auto-registered by ``eventpipe.cli``). Reading: ``eventpipe.rejected``; replaying:
``eventpipe.replay``."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from eventpipe.rejected import Query, Rejected
from eventpipe.settings import Settings
from eventpipe.timeutil import parse_ts


def _since(text: str) -> datetime:
    try:
        return parse_ts(text)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 date or time, got {text!r}") from exc


def _items(
    settings: Settings, s3: Any, args: argparse.Namespace, ids: frozenset[str] = frozenset()
) -> list[Rejected]:
    from eventpipe.rejected import read

    query = Query(reason=args.reason, since=args.since, ids=ids)
    return list(read(s3, settings.s3_bucket, settings.s3_prefix, query))


def _wired() -> tuple[Settings, Any]:
    """The settings and the S3 client (``eventpipe.bootstrap``) a subcommand reads with."""
    from eventpipe.bootstrap import build_s3
    from eventpipe.settings import get_settings

    settings = get_settings()
    return settings, build_s3(settings)


def _clean(value: Any, width: int = 60) -> str:
    """Event data is text, never markup or terminal control (``eventpipe.terminal``)."""
    from eventpipe.terminal import printable, safe

    text = printable(value if value is not None else "")
    return safe(text if len(text) <= width else text[: width - 1] + "…")


def _what(item: Rejected) -> str:
    message = item.message if isinstance(item.message, dict) else {}
    return f"{message.get('type') or '?'} {message.get('event') or message.get('name') or ''}".strip()


def _list(args: argparse.Namespace) -> int:
    items = _items(*_wired(), args)
    if args.format == "json":
        print(orjson.dumps([i.as_dict() for i in items]).decode())
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(items)} rejected events")
    for column in ("id", "received", "source", "reason", "detail", "event"):
        table.add_column(column)
    for i in items:
        received = i.received_at.isoformat(timespec="seconds") if i.received_at else ""
        table.add_row(*(_clean(v) for v in (i.id, received, i.source, i.reason, i.detail, _what(i))))
    Console().print(table)
    by_reason = Counter(i.reason for i in items)
    print(", ".join(f"{reason}: {n}" for reason, n in by_reason.most_common()) or "nothing rejected")
    return 0


def _show(args: argparse.Namespace) -> int:
    items = _items(*_wired(), args, frozenset(args.ids))
    missing = set(args.ids) - {i.id for i in items}
    print(orjson.dumps([i.as_dict() for i in items], option=orjson.OPT_INDENT_2).decode())
    if missing:
        print(f"eventpipe rejected show: not found: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    return 0


def _replay(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from eventpipe.replay import ReplayError, load_fix, plan, send

    settings, s3 = _wired()
    try:
        fix = load_fix(args.fix_script) if args.fix_script else None
        prepared = plan(_items(settings, s3, args, frozenset(args.id or ())), fix)
        collector = args.collector or f"http://127.0.0.1:{settings.ingest_port}"
        refused: list[Any]
        if args.dry_run:
            accepted, refused = 0, []
        else:
            with Progress(disable=prepared.total < 500, transient=True) as bar:
                task = bar.add_task("replaying", total=prepared.total)
                accepted, refused = send(
                    collector, prepared, settings.write_key_map, lambda n: bar.advance(task, n)
                )
    except ReplayError as exc:
        print(f"eventpipe rejected replay: {exc}", file=sys.stderr)
        return 1
    summary = {
        "to_send": prepared.total,
        "accepted": accepted,
        "refused_by_collector": refused,
        "still_invalid": [{"id": i, "why": why} for i, why in prepared.invalid],
        "skipped": dict(prepared.skipped),
        "dry_run": args.dry_run,
    }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0 if not refused else 1


def register(sub: argparse._SubParsersAction) -> None:
    rejected = sub.add_parser("rejected", help="inspect and replay rejected events (S3 rejected/)")
    commands = rejected.add_subparsers(dest="rejected_command", required=True)

    def filters(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--reason", help="only this rejection reason (e.g. missing_user)")
        parser.add_argument("--since", type=_since, help="only events received at or after (ISO 8601)")
        return parser

    listing = filters(commands.add_parser("list", help="the rejected events, with reason and detail"))
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="rejected events in full (JSON), by id")
    show.add_argument("ids", nargs="+", metavar="ID", help="<stage>:<partition>:<offset>, as listed")
    show.set_defaults(handler=_show, reason=None, since=None)

    replay = filters(commands.add_parser("replay", help="re-submit through the collector's validation"))
    replay.add_argument("--id", action="append", help="only this id (repeatable)")
    replay.add_argument(
        "--fix-script", type=Path, help="a .py defining fix(message, rejected) -> dict | None"
    )
    replay.add_argument("--collector", help="collector base URL (default: the local one)")
    replay.add_argument("--dry-run", action="store_true", help="prepare and validate, send nothing")
    replay.set_defaults(handler=_replay)
