"""Run by the dbt venv's python (``.local/dbt/bin/python``), never imported by eventpipe: dbt
is not installed in eventpipe's venv (docs/checks.md). One process parses the project once and
then runs ``dbt source freshness``, ``dbt run`` and ``dbt test`` on that manifest (each ``dbt``
command would import dbt and parse the project again: about twice the time).
``run`` then ``test`` rather than ``build``: ``build`` skips what is downstream of a failed test,
so one fault would hide the others' outcomes.

    python dbt_invoke.py OUT_DIR DBT_ARGS...

DBT_ARGS are the flags the commands take (project, profiles, target and log dirs, vars); OUT_DIR
receives ``sources.json`` (freshness), ``models.json`` (the run's results) and ``tests.json``.
Exit 0: everything passed; 1: a test failed or a source is stale (the artifacts say which);
2: dbt could not run (the error is on stderr).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from dbt.cli.main import dbtRunner

    out, common = Path(argv[0]), argv[1:]
    parsed = dbtRunner().invoke(["parse", *common])
    if parsed.exception is not None or parsed.result is None:
        print(f"dbt parse failed: {parsed.exception}", file=sys.stderr)
        return 2
    runner = dbtRunner(manifest=parsed.result)
    code = 0
    target = Path(common[common.index("--target-path") + 1])
    steps = (
        (["source", "freshness", "--output", str(out / "sources.json")], None),
        (["run"], "models.json"),
        (["test"], "tests.json"),
    )
    for command, keep in steps:
        done = runner.invoke([*command, *common])
        if done.exception is not None:
            print(f"dbt {command[0]} failed: {done.exception}", file=sys.stderr)
            return 2
        if keep:  # each command overwrites run_results.json
            shutil.copyfile(target / "run_results.json", out / keep)
        code = code or (0 if done.success else 1)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
