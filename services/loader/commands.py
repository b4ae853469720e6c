"""``eventpipe reprocess``: the nightly reprocess of one day, by hand (auto-registered by
``eventpipe.cli``). The loader service runs the same thing on a schedule."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

RUNNERS = ("inline", "local", "hadoop", "emr")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def _reprocess(args: argparse.Namespace) -> int:
    import orjson

    from eventpipe.errors import EventpipeError
    from eventpipe.loader.reprocess.pipeline import ReprocessBusy, run_day
    from eventpipe.logs import configure
    from eventpipe.settings import get_settings

    configure()
    try:
        result = run_day(
            get_settings(), args.date, args.lateness_days, args.runner, progress=sys.stderr.isatty()
        )
    except ReprocessBusy as exc:
        print(f"eventpipe reprocess: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except EventpipeError as exc:
        print(f"eventpipe reprocess: {exc}", file=sys.stderr)
        return 1
    summary: dict[str, Any] = {
        "day": result.day.isoformat(),
        "lateness_days": result.lateness_days,
        "runner": result.runner,
        "raw_objects": result.objects,
        "input_lines": result.input_lines,
        "rows": result.rows,
        "drift": result.drift,
        "corrections": result.corrections,
        "duration_s": round(result.duration_s, 3),
    }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "reprocess",
        help="recompute a closed day from the raw S3 logs and make it final in the warehouse",
    )
    parser.add_argument("--date", type=_day, required=True, help="the day D (UTC), YYYY-MM-DD")
    parser.add_argument(
        "--lateness-days", type=int, default=None, help="read received dates D-1..D+N (default: settings)"
    )
    parser.add_argument("--runner", choices=RUNNERS, default=None, help="mrjob runner (default: settings)")
    parser.set_defaults(handler=_reprocess)
