"""``eventpipe reprocess``: the nightly reprocess of one day, by hand (auto-registered by
``eventpipe.cli``). The loader service runs the same thing on a schedule."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

RUNNERS = ("inline", "local", "hadoop", "emr")
ENGINES = ("mrjob", "spark")  # eventpipe.loader.reprocess.engines (not imported: the CLI starts fast)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def _reprocess(args: argparse.Namespace) -> int:
    import orjson

    from eventpipe.bootstrap import build_reprocess
    from eventpipe.errors import EventpipeError
    from eventpipe.loader.reprocess.pipeline import QUARANTINE_WAIT_S, CorruptInputs, ReprocessBusy, run_day
    from eventpipe.logs import configure
    from eventpipe.settings import get_settings

    configure()
    try:
        wait_s = QUARANTINE_WAIT_S if args.quarantine_wait_s is None else args.quarantine_wait_s
        settings = get_settings()
        result = run_day(
            settings,
            args.date,
            args.lateness_days,
            args.runner,
            progress=sys.stderr.isatty(),
            quarantine_wait_s=wait_s,
            engine=getattr(args, "engine", None),  # a Namespace built by hand may lack it
            adapters=build_reprocess(settings),
        )
    except ReprocessBusy as exc:
        print(f"eventpipe reprocess: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except CorruptInputs as exc:  # nothing written: the day stays provisional
        failed = {
            "day": exc.day.isoformat(),
            "error": "corrupt raw objects not quarantined",
            "corrupt_objects": [o.as_dict() for o in exc.corrupt],
            "loaded_but_refused": sorted(exc.loaded),
        }
        print(orjson.dumps(failed, option=orjson.OPT_INDENT_2).decode())
        print(f"eventpipe reprocess: {exc}", file=sys.stderr)
        return 1
    except EventpipeError as exc:
        print(f"eventpipe reprocess: {exc}", file=sys.stderr)
        return 1
    summary: dict[str, Any] = {
        "day": result.day.isoformat(),
        "lateness_days": result.lateness_days,
        "runner": result.runner,
        "engine": result.engine,
        "raw_objects": result.objects,
        "input_lines": result.input_lines,
        "rows": result.rows,
        "drift": result.drift,
        "skipped_objects": result.skipped,
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
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="the job's engine: mrjob, or spark in local mode (default: settings, mrjob)",
    )
    parser.add_argument(
        "--quarantine-wait-s",
        type=float,
        default=None,
        help="wait this long for the loader to quarantine a corrupt raw object before failing (default: 90)",
    )
    parser.set_defaults(handler=_reprocess)
