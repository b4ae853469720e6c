"""The alert rules and their promtool unit tests (scripts/check-prometheus.sh), run by `make test`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RUNBOOK = ROOT / "docs" / "runbook.md"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def alert_rules() -> list[dict]:
    rules = []
    for path in sorted((PROM / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


@needs_promtool
def test_check_script_passes() -> None:
    """promtool check config (native + docker), check rules, test rules."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "check-prometheus.sh")], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "FAILED" not in result.stdout


def test_every_alert_has_summary_runbook_and_severity() -> None:
    anchors = {m.lower() for m in re.findall(r"^## (\w+)", RUNBOOK.read_text(), re.MULTILINE)}
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"], name
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/runbook.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/runbook.md has no section '## {name}'"


def test_every_alert_has_a_firing_and_a_quiet_test() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in (PROM / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts never fired by a test"
    assert names - quiet == set(), "alerts never checked quiet by a test"
