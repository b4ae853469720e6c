"""docker-compose.yml against the files it mounts and the settings it hands out (static: the
compose stack has never run on an engine here, so everything that can be read is checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_prometheus_has_no_lifecycle_api(spec: dict[str, Any]) -> None:
    assert not any("enable-lifecycle" in str(arg) for arg in spec["services"]["prometheus"]["command"])
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    assert not [line for line in stack.splitlines() if "--web.enable-lifecycle" in line.split("#")[0]]
