"""Prints the results table of docs/reliability.md from the checker's results file:
``.venv/bin/python -m tests.support.faults.report [results.jsonl]`` (the latest row per scenario)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support.faults.checker import RESULTS

HEADER = (
    "| scenario | sent | ok | failed | unknown | lost | duplicated | failed stored | unknown stored "
    "| rows ≠ payload | streamed = truth (before reprocess) | final = truth (after reprocess) "
    "| answers (status × requests) |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
)
YES_NO = {True: "yes", False: "**no**", None: "n/a"}


def rows(path: Path) -> list[dict]:
    latest: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            latest[row["scenario"]] = row
    return sorted(latest.values(), key=lambda r: (len(r["scenario"].split()[0]), r["scenario"]))


def streamed(row: dict) -> str:
    text = YES_NO[row.get("streamed_equal")]
    if row.get("streamed_equal") is False and not row.get("streamed_required", True):
        return "no (out-of-order input: not required)"
    return text


def table(path: Path = RESULTS) -> str:
    lines = [HEADER]
    for r in rows(path):
        answers = ", ".join(f"{k}×{v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {r['scenario']} | {r['sent']} | {r['ok']} | {r['failed']} | {r['unknown']} | {r['lost']} "
            f"| {r['duplicated']} | {r['failed_stored']} | {r['unknown_stored']} "
            f"| {r.get('fields_differing', 'n/a')} "
            f"| {streamed(r)} | {YES_NO[r['final_equal']]} | {answers} |"
        )
    return "\n".join(lines)


def evidence(path: Path = RESULTS) -> str:
    """Per scenario, what shows its fault hit the dangerous moment."""
    return "\n".join(
        f"- {r['scenario']}: {'; '.join(r['evidence'])}" for r in rows(path) if r.get("evidence")
    )


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    print(table(source))
    print()
    print(evidence(source))
