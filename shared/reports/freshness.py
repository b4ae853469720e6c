"""How current and how final the data is (pure): the verdicts behind ``eventpipe status``
and the report's ``stale``/``provisional`` warnings. The probes that gather the facts
live in ``probes.py``; ``now`` is always passed in, so every verdict is testable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

OK, STALE, DOWN, UNKNOWN = "ok", "stale", "not running", "unknown"


@dataclass(frozen=True)
class LoadFacts:
    """What the warehouse says about itself; None = unknown (table missing or empty)."""

    newest_received_at: datetime | None
    newest_loaded_at: datetime | None
    loaded_objects: int | None
    final_days: set[date] | None  # None: no day_status table (the nightly job never ran)


@dataclass(frozen=True)
class StageStatus:
    stage: str
    state: str  # OK, STALE, DOWN or UNKNOWN
    detail: str


@dataclass
class Status:
    """What ``eventpipe status`` shows: every stage, and recent days' finality."""

    stages: list[StageStatus]
    days: list[tuple[date, str]]  # final / provisional / unknown


def age_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def day_states(first: date, today: date, final_days: set[date] | None) -> list[tuple[date, str]]:
    """Each day from ``first`` to ``today``: ``final``, ``provisional`` or ``unknown``."""
    if final_days is None:
        return [(d, UNKNOWN) for d in days_between(first, today)]
    return [(d, "final" if d in final_days else "provisional") for d in days_between(first, today)]


def _span(days: list[date]) -> str:
    return days[0].isoformat() if len(days) == 1 else f"{days[0]} .. {days[-1]}"


def data_warnings(facts: LoadFacts, now: datetime, stale_minutes: float, since: datetime | None) -> list[str]:
    """``stale``/``provisional`` warnings for data used from ``since`` (first exposure) on."""
    warnings = []
    if facts.newest_received_at is None:
        warnings.append("stale: no loaded event in the warehouse; how current the data is is unknown")
    else:
        age = (now - facts.newest_received_at).total_seconds()
        if age > stale_minutes * 60:
            warnings.append(
                f"stale: the newest loaded event was received {age_text(age)} ago "
                f"(> {stale_minutes:g} min); recent events may be missing"
            )
    if since is None:
        return warnings
    days = days_between(since.date(), now.date())
    if facts.final_days is None:
        warnings.append(
            f"provisional: no day_status table (nightly reprocess never ran): {_span(days)} provisional"
        )
        return warnings
    open_days = [d for d in days if d not in facts.final_days]
    if open_days:
        warnings.append(
            f"provisional: {len(open_days)} of {len(days)} days not final yet ({_span(open_days)}); "
            "the nightly reprocess may still correct them"
        )
    return warnings


def loader_stage(facts: LoadFacts, now: datetime, stale_minutes: float) -> StageStatus:
    parts = []
    state = UNKNOWN
    if facts.newest_received_at is not None:
        age = (now - facts.newest_received_at).total_seconds()
        state = STALE if age > stale_minutes * 60 else OK
        parts.append(f"newest loaded event received {age_text(age)} ago")
    else:
        parts.append("no loaded event")
    if facts.loaded_objects is not None:
        when = f", last at {facts.newest_loaded_at:%Y-%m-%d %H:%M:%S}" if facts.newest_loaded_at else ""
        parts.append(f"{facts.loaded_objects} objects in the ledger{when}")
    else:
        parts.append("no load ledger")
    return StageStatus("loader", state, "; ".join(parts))


def nightly_stage(facts: LoadFacts, today: date, lateness_days: int = 1) -> StageStatus:
    if facts.final_days is None:
        return StageStatus("nightly", UNKNOWN, "no day_status table: every day is provisional")
    if not facts.final_days:
        return StageStatus("nightly", UNKNOWN, "no final day yet: every day is provisional")
    newest = max(facts.final_days)
    behind = (today - newest).days
    # day D can be final only once D + lateness has closed and the nightly run is over
    state = OK if behind <= lateness_days + 2 else STALE
    return StageStatus(
        "nightly", state, f"newest final day {newest} ({behind} d ago); {len(facts.final_days)} final days"
    )
