"""Unit tests are hermetic: no network, and no settings from the environment they run in.

Settings read ``EVENTPIPE_*`` variables, and the tiers that need real components are
pointed at them through exactly those variables (tests/stack.py, ``make test-calendar``):
a unit test that builds Settings must not see them.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_eventpipe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("EVENTPIPE_")]:
        monkeypatch.delenv(name)
