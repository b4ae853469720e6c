"""The ``eventpipe`` command line. Each sub-command imports its service lazily so that
``eventpipe --help`` stays fast and one service's dependencies never load another's."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date

Handler = Callable[[argparse.Namespace], int]


def _ingest(args: argparse.Namespace) -> int:
    from eventpipe.ingest.main import serve

    return serve(workers=args.workers)


def _stream(args: argparse.Namespace) -> int:
    from eventpipe.stream.worker import main

    return main()


def _loader(args: argparse.Namespace) -> int:
    from eventpipe.loader.service import main

    return main()


def _demo(args: argparse.Namespace) -> int:
    from eventpipe.demo import main
    from eventpipe.settings import get_settings

    return main(get_settings(), users=args.users, seed=args.seed)


def _create_topics(args: argparse.Namespace) -> int:
    from eventpipe.kafka_admin import create_topics
    from eventpipe.settings import get_settings

    created = create_topics(get_settings(), wait_s=args.wait)
    print(f"topics ready (created: {', '.join(created) or 'none, all existed'})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from rich.console import Console

    from eventpipe.bootstrap import build_warehouse
    from eventpipe.errors import EventpipeError
    from eventpipe.loader.verify import print_table, verify_day
    from eventpipe.settings import get_settings

    wh = build_warehouse(get_settings(), application_name="eventpipe-verify")
    try:
        result = wh.run(lambda conn: verify_day(conn, wh.dialect, wh.schema, args.date))
    except EventpipeError as exc:  # not a verdict: nothing was compared
        print(f"eventpipe verify: {str(exc).strip()}", file=sys.stderr)
        return 2
    finally:
        wh.close()
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2, allow_nan=False))
    else:
        print_table(result, Console(highlight=False))
    return 0 if result.ok else 1


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="run the HTTP collector (uvicorn)")
    ingest.add_argument("--workers", type=int, default=1)
    ingest.set_defaults(handler=_ingest)

    sub.add_parser("stream", help="run a stream worker").set_defaults(handler=_stream)
    sub.add_parser("loader", help="run the warehouse loader").set_defaults(handler=_loader)

    demo = sub.add_parser("demo", help="send synthetic traffic through the running stack, print the tables")
    demo.add_argument("--users", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=None)
    demo.set_defaults(handler=_demo)

    admin = sub.add_parser("admin", help="operational chores").add_subparsers(
        dest="admin_command", required=True
    )
    topics = admin.add_parser("create-topics", help="create the Kafka topics (idempotent)")
    topics.add_argument("--wait", type=float, default=30.0, help="seconds to wait for Kafka")
    topics.set_defaults(handler=_create_topics)

    verify = sub.add_parser(
        "verify",
        help="recompute a day's aggregates from the events table and show every row that differs "
        "(exit 0 only when none does)",
    )
    verify.add_argument("--date", type=_day, required=True, help="the day D (UTC), YYYY-MM-DD")
    verify.add_argument("--format", choices=("table", "json"), default="table")
    verify.set_defaults(handler=_verify)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Sub-commands contributed by services (reprocess, experiments, status)."""
    found = []
    for module_name in (
        "eventpipe.loader.commands",
        "eventpipe.reports.commands",
        "eventpipe.reports.funnel_commands",
        "eventpipe.checks.commands",
        "eventpipe.rejected_cli",
    ):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        found.append(module.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
