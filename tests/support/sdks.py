"""The real Segment SDKs' tools for tests: the npm packages and Chromium that
``scripts/stack.sh up tools`` installs (``make test`` runs it first), a static site on
127.0.0.1 for the browser SDK's page, and a runner for the Node scripts in tests/e2e/sdk/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.servers import http_server

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".local" / "sdks" / "node_modules"  # scripts/stack.sh up tools installs them
SCRIPTS = ROOT / "tests" / "e2e" / "sdk"
INSTALL_HINT = "run `scripts/stack.sh up tools` (make test does) to install the SDK test tools"


def npm_package(name: str) -> Path:
    path = NODE_MODULES / name
    if not (path / "package.json").exists():
        raise RuntimeError(f"npm package {name} is not installed under {NODE_MODULES}: {INSTALL_HINT}")
    return path


def npm_version(name: str) -> str:
    return json.loads((npm_package(name) / "package.json").read_text())["version"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(f"Debian's chromium is not installed: {INSTALL_HINT}")
    return found


def run_node(script: str, *args: str, timeout_s: float = 120) -> dict[str, Any]:
    """Run tests/e2e/sdk/<script> with the installed npm packages; its last stdout line, parsed."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(f"node is not installed: {INSTALL_HINT}")
    done = subprocess.run(
        [node, str(SCRIPTS / script), *args],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is the SDK's, not one line per bundle fetched


@contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """Serves ``directory`` on 127.0.0.1 (a free port) for as long as the block runs."""
    with http_server(partial(_QuietHandler, directory=str(directory))) as url:
        yield url
