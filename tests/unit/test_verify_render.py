"""``eventpipe verify``'s table output: event data is shown as data (rich markup escaped,
control characters removed), and the verdict says what was compared."""

from __future__ import annotations

from datetime import date

from rich.console import Console

from eventpipe.loader.verify import RowDiff, Verification, print_table
from eventpipe.loader.verify_loop import confirmed


def rendered(result: Verification) -> str:
    console = Console(record=True, width=200, color_system=None)
    print_table(result, console)
    return console.export_text()


def test_markup_in_event_data_is_printed_literally():
    result = Verification(date(2026, 11, 19), "final")
    result.differing = {
        "engagement_daily": [
            RowDiff({"event": "[bold]Ghost[/bold]\x1b[31m"}, {"event_count": 4, "user_count": 2}, None)
        ],
        "experiment_daily": [],
    }
    text = rendered(result)
    assert "[bold]Ghost[/bold]\ufffd[31m" in text and "\x1b" not in text
    assert "event_count=4, user_count=2" in text and "(no row)" in text
    assert "rows differ" in text and "experiment_daily: all rows equal the definitions" in text
    assert not result.ok


def test_a_day_without_differences_is_ok_and_says_so():
    result = Verification(date(2026, 11, 19), "provisional", {"engagement_daily": []})
    assert result.ok and result.as_dict()["ok"] is True
    assert "no row differs" in rendered(result)


def test_only_rows_that_differ_twice_are_confirmed():
    def diff(*events: str) -> Verification:
        rows = [RowDiff({"event": e}, {"event_count": 1, "user_count": 1}, None) for e in events]
        return Verification(date(2026, 11, 19), "provisional", {"engagement_daily": rows})

    # "Buy" was a load in flight at the first look; "Home" still differs a moment later
    result = confirmed(diff("Buy", "Home"), diff("Home", "Signup"))
    assert [r.key["event"] for r in result.differing["engagement_daily"]] == ["Home"]
    assert confirmed(diff("Buy"), diff()).ok
