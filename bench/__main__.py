"""``make bench``: every stage's benchmark, each side by side with its baseline or ceiling
in the same run, printed as a table and written to bench/results.json.

A stage whose module is missing is left out; ``python -m bench ingest loader`` runs some.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

STAGES = ("ingest", "stream", "loader", "freshness", "reprocess", "verify", "report", "funnel")
RESULTS = Path(__file__).with_name("results.json")


def main(argv: list[str]) -> int:
    console = Console()
    wanted = argv or list(STAGES)
    results: dict[str, dict] = orjson.loads(RESULTS.read_bytes()) if RESULTS.exists() and argv else {}
    failed = []
    for stage in wanted:
        try:
            module = importlib.import_module(f"bench.{stage}")
        except ModuleNotFoundError:
            console.print(f"[yellow]{stage}: no benchmark yet, left out[/]")
            continue
        console.print(f"[bold]{stage}[/] …")
        started = time.monotonic()
        try:
            results[stage] = module.run()
        except Exception:
            failed.append(stage)
            console.print(f"[red]{stage} failed[/]\n{traceback.format_exc()}")
            continue
        console.print(f"  done in {time.monotonic() - started:.0f}s")
        RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    table = Table(title="eventpipe benchmarks (loopback, this machine, one run)")
    for column in ("stage", "figure", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for stage, figures in results.items():
        for name, value in figures.items():
            shown = _shown(value)
            table.add_row(stage, name, shown)
    console.print(table)
    console.print(f"written to {RESULTS}")
    return 1 if failed else 0


def _shown(value: object) -> str:
    """A float with three significant digits below 10 (ratios, µs, ms), else one decimal."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
