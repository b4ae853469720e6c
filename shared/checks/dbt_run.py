"""Build the dbt project of ``dbt/`` (models and their tests, docs/checks.md) with the dbt of
its own venv (``.local/dbt``: dbt-core 1.11 pins a pathspec that breaks the dev venv's mypy),
in a subprocess (``dbt_invoke``: source freshness, run, test). Their artifacts become check rows.

The profile is written from the warehouse settings into a temporary directory (the password
reaches dbt through the environment, never a file), and dbt's target and logs go there too:
nothing is written into the checkout, and two runs never share a directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from eventpipe.checks import dbt_results
from eventpipe.checks.results import CheckResult
from eventpipe.loader.connection import dsn_parts
from eventpipe.settings import Settings

PROJECT = Path(__file__).parent / "dbt"
# run by the dbt venv's python with -I: its own folder (which holds dbt/) stays off sys.path
INVOKE = Path(__file__).with_name("dbt_invoke.py")
CHECKOUT = Path(__file__).resolve().parents[2]  # a relative dbt_executable is the checkout's
PASSWORD_ENV = "EVENTPIPE_DBT_PASSWORD"
THREADS = 4
TIMEOUT_S = 900  # a hung warehouse must not hang the nightly


@dataclass
class DbtRun:
    rows: list[CheckResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def profile(dsn: str, schema: str, dialect: str) -> tuple[str, str]:
    """``profiles.yml`` for the warehouse, and the password to hand dbt in ``PASSWORD_ENV``."""
    parts = dsn_parts(dsn)
    output: dict[str, Any] = {
        "type": "redshift" if dialect == "redshift" else "postgres",
        "host": parts.get("host", "127.0.0.1"),
        "port": int(parts.get("port", "5439" if dialect == "redshift" else "5432")),
        "user": parts.get("user", ""),
        "password": "{{ env_var('" + PASSWORD_ENV + "') }}",
        "dbname": parts.get("dbname", ""),
        "schema": schema,
        "threads": THREADS,
    }
    if "sslmode" in parts:
        output["sslmode"] = parts["sslmode"]
    doc = {"eventpipe": {"target": "warehouse", "outputs": {"warehouse": output}}}
    return yaml.safe_dump(doc, sort_keys=False), parts.get("password", "")


def executable(settings: Settings) -> Path:
    path = Path(settings.dbt_executable)
    return path if path.is_absolute() else CHECKOUT / path


def build(settings: Settings, day: date, freshness_now: datetime) -> DbtRun:
    """Freshness and build for ``day``; a missing dbt or a dbt that fails to run is an error."""
    dbt = executable(settings)
    if not os.access(dbt, os.X_OK):
        return DbtRun(errors=[
            f"dbt is not installed at {dbt}: `make up` or `scripts/stack.sh up postgres` installs it "
            "(or set EVENTPIPE_DBT_EXECUTABLE)"
        ])  # fmt: skip
    text, password = profile(settings.warehouse_dsn, settings.warehouse_schema, settings.warehouse_dialect)
    with tempfile.TemporaryDirectory(prefix="eventpipe-dbt-") as tmp:
        work = Path(tmp)
        (work / "profiles.yml").write_text(text)
        env = {
            **os.environ, PASSWORD_ENV: password,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false",
        }  # fmt: skip
        common = [
            "--project-dir", str(PROJECT), "--profiles-dir", str(work),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
            "--vars", json.dumps({"date": day.isoformat(), "freshness_now": freshness_now.isoformat()}),
        ]  # fmt: skip
        run = DbtRun()
        python = dbt.parent / "python"
        _invoke([str(python), "-I", str(INVOKE), str(work), *common], env, run)
        sources, models, tests = (work / name for name in ("sources.json", "models.json", "tests.json"))
        manifest = work / "target" / "manifest.json"
        if sources.exists():
            run.rows += dbt_results.from_freshness(_read(sources))
        if manifest.exists() and models.exists():
            run.rows += dbt_results.from_build(_read(models), _read(manifest))
        if manifest.exists() and tests.exists():
            run.rows += dbt_results.from_build(_read(tests), _read(manifest))
        elif not run.errors:
            run.errors.append("dbt test wrote no results")
        return run


def _invoke(command: list[str], env: dict[str, str], run: DbtRun) -> None:
    """Exit 0 all passed, 1 a test failed (the artifacts say which), else dbt could not run."""
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        run.errors.append(f"dbt did not finish within {TIMEOUT_S} s")
        return
    if done.returncode not in (0, 1):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        run.errors.append(f"dbt failed (exit {done.returncode}):\n{tail}")


def _read(path: Path) -> Any:
    return json.loads(path.read_text())
