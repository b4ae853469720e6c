"""Hostile experiment ids, variants and event names in every table the CLI prints.

Before: ``[/bold]`` crashed ``eventpipe experiments list|report`` with rich's MarkupError,
``[link=…]`` injected a hyperlink, raw escape sequences reached the terminal.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from rich.console import Console

from eventpipe.reports import render
from eventpipe.reports.analysis import build_report
from eventpipe.reports.freshness import StageStatus, Status
from eventpipe.reports.stats import VariantCounts
from eventpipe.reports.warehouse import ExperimentSummary
from eventpipe.terminal import printable, safe

HOSTILE = [
    "[/bold]",
    "[link=https://evil.example]click me[/link]",
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;https://evil.example\x1b\\x\x1b]8;;\x1b\\",
    "bell\x07tab\tnul\x00",
    "rev\u202eesrever",
    "[bold red]shout",
    ":warning:",
]


def rendered(draw, terminal: bool = False) -> str:
    out = io.StringIO()
    console = Console(
        file=out,
        width=400,
        force_terminal=terminal,
        color_system="truecolor" if terminal else None,
        emoji=False,
    )
    draw(console)
    return out.getvalue()


def report_for(name: str):
    counts = [VariantCounts(name, 1000, 100), VariantCounts(name + "-b", 1000, 200)]
    return build_report(name, name, counts, control=name)


def summary_for(name: str) -> ExperimentSummary:
    when = datetime(2026, 11, 26, tzinfo=UTC)
    return ExperimentSummary(name, [name, "b"], 10, 5, when, when)


def status_for(name: str) -> Status:
    return Status([StageStatus(name, name, name)], [(date(2026, 11, 26), "final")])


DRAWINGS = [
    ("report", lambda name: lambda c: render.report_table(report_for(name), c)),
    ("experiments", lambda name: lambda c: render.experiments_table([summary_for(name)], c)),
    ("status", lambda name: lambda c: render.status_table(status_for(name), c)),
]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize(("table", "drawing"), DRAWINGS, ids=[d[0] for d in DRAWINGS])
def test_hostile_names_print_literally_without_escapes(table, drawing, name):
    text = rendered(drawing(name))  # no MarkupError
    assert printable(name) in text  # shown as written, minus control characters
    assert not any(ch in text for ch in "\x1b\x07\x00\u202e"), repr(text)


@pytest.mark.parametrize(("table", "drawing"), DRAWINGS, ids=[d[0] for d in DRAWINGS])
def test_no_link_or_style_is_injected_on_a_real_terminal(table, drawing):
    plain = rendered(drawing("innocent"), terminal=True)
    hostile = rendered(drawing("[link=https://evil.example]x[/link][bold red]y"), terminal=True)
    assert "\x1b]8;" not in hostile  # OSC 8 hyperlink
    assert "evil.example" in hostile
    # the same escape codes as an innocent name: the data added none of its own
    assert set(_codes(hostile)) == set(_codes(plain))


def _codes(text: str) -> list[str]:
    import re

    return re.findall(r"\x1b\[[0-9;]*m", text)


@given(st.text())
@example("\\[")  # rich >= 15 reads a backslash before any "[" as an escape
@example("a\\[b[c]")
@example("\\\\")  # a trailing run of two: rich's escape() pads only a run of one
@example("x\\\\\\")
def test_safe_text_renders_back_to_its_printable_self(text):
    """Also beside markup of our own: a trailing backslash must not escape the next tag."""
    markup = f"{safe(text)}[bold]![/bold]"
    assert (
        rendered(lambda c: c.print(markup, end="", highlight=False, soft_wrap=True)) == printable(text) + "!"
    )
