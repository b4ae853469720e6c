"""Prints the results table of docs/reliability.md from the checker's results file:
``.venv/bin/python -m tests.faults.report [results.jsonl]`` (the latest row per scenario)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.faults.checker import RESULTS

HEADER = (
    "| scenario | sent | ok | failed | unknown | lost | duplicated | failed stored | unknown stored "
    "| final counts = truth | answers (status × requests) |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
)


def rows(path: Path) -> list[dict]:
    latest: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            latest[row["scenario"]] = row
    return sorted(latest.values(), key=lambda r: (len(r["scenario"].split()[0]), r["scenario"]))


def table(path: Path = RESULTS) -> str:
    lines = [HEADER]
    for r in rows(path):
        final = {True: "yes", False: "**no**", None: "n/a"}[r["final_equal"]]
        answers = ", ".join(f"{k}×{v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {r['scenario']} | {r['sent']} | {r['ok']} | {r['failed']} | {r['unknown']} | {r['lost']} "
            f"| {r['duplicated']} | {r['failed_stored']} | {r['unknown_stored']} | {final} | {answers} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS))
