"""dbt's artifacts as check rows (pure): ``run_results.json`` of ``dbt run``/``test``/``build``
(each test, and each model that failed to build), ``sources.json`` of ``dbt source freshness``, and the
``manifest.json`` that says which model or source each test is attached to.

dbt's statuses: a test passes, fails (``fail``; ``warn`` counts as a failure: nothing here is
configured to warn) or ``error``s; a test skipped because its model failed is an error too (it
protected nothing). Freshness: ``pass``, ``warn``/``error`` (stale: a failure), ``runtime error``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eventpipe.checks.results import ERROR, FAIL, PASS, CheckResult

_TEST_OUTCOME = {"pass": PASS, "fail": FAIL, "warn": FAIL}
_FRESHNESS_OUTCOME = {"pass": PASS, "warn": FAIL, "error": FAIL}


_TESTED = re.compile(r"""(?:ref\(\s*|source\(\s*['"][^'"]+['"]\s*,\s*)['"]([^'"]+)['"]""")


def _dataset(node: Mapping[str, Any]) -> str:
    """The model or source table a generic test is on (its ``model`` argument), else the one
    model a singular test reads, else ``dbt``."""
    tested = _TESTED.search(str(((node.get("test_metadata") or {}).get("kwargs") or {}).get("model", "")))
    if tested:
        return tested.group(1)
    depends = [n for n in (node.get("depends_on") or {}).get("nodes", []) if n.startswith("model.")]
    return depends[0].rsplit(".", 1)[-1] if len(depends) == 1 else "dbt"


def _check(node: Mapping[str, Any], unique_id: str) -> str:
    """A generic test as ``kind(column)`` (``unique(raw_id)``), else the test's own name."""
    meta = node.get("test_metadata") or {}
    if not meta.get("name"):
        return str(node.get("name") or unique_id)
    column = (meta.get("kwargs") or {}).get("column_name")
    return f"{meta['name']}({column})" if column else str(meta["name"])


def from_build(run_results: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[CheckResult]:
    """One row per test (and per model that failed to build); two tests that would show the
    same ``kind(column)`` on one dataset keep dbt's longer, unique test names."""
    nodes = manifest.get("nodes", {})
    names = [(_dataset(n), _check(n, i)) for i, n in nodes.items() if i.startswith("test.")]
    rows = []
    for result in run_results.get("results", []):
        unique_id = str(result.get("unique_id", ""))
        node = nodes.get(unique_id, {})
        status = str(result.get("status", ""))
        if unique_id.startswith("test."):
            failures = result.get("failures")
            dataset, check = _dataset(node), _check(node, unique_id)
            if names.count((dataset, check)) > 1:
                check = str(node.get("name") or unique_id)
            rows.append(
                CheckResult(
                    dataset=dataset,
                    check=check,
                    outcome=_TEST_OUTCOME.get(status, ERROR),
                    value=float(failures) if isinstance(failures, int | float) else None,
                )
            )
        elif status not in ("success", "pass"):  # a model that did not build
            rows.append(CheckResult(unique_id.rsplit(".", 1)[-1], "build", ERROR, None))
    return sorted(rows, key=lambda r: (r.dataset, r.check))


def from_freshness(sources: Mapping[str, Any]) -> list[CheckResult]:
    rows = []
    for result in sources.get("results", []):
        age = result.get("max_loaded_at_time_ago_in_s")
        after = (result.get("criteria") or {}).get("error_after") or {}
        limit = f"{after.get('count')}{(after.get('period') or '')[:1]}" if after.get("count") else "?"
        rows.append(
            CheckResult(
                dataset=str(result.get("unique_id", "")).rsplit(".", 1)[-1],
                check=f"source_freshness < {limit}",
                outcome=_FRESHNESS_OUTCOME.get(str(result.get("status")), ERROR),
                value=float(age) if isinstance(age, int | float) else None,
            )
        )
    return rows
