"""A fetched run of Kafka values decoded and checked at once, as columns (pure, no I/O).

The columnar fold (``columnar.py``) reads these columns instead of one ``Folded`` tuple per
event. ``decode_run`` accepts a run only if *every* record is one the row path would fold
without complaint: a value ``parse_event`` accepts and an event ``PartitionState.extract``
can read. Anything else -- an empty value, invalid JSON, a missing or empty field, a
timestamp the pattern refuses, a user key or event name that is not a string, an impossible
date, malformed exposure properties -- makes it return ``None`` and the caller handles the
whole run on the row path, which sends each bad record where it goes today (``rejected/``).
So the fast path never decides what is valid: it only recognises the runs where the row
path's checks would all pass, using the same functions (``user_key``, ``engagement_name``,
``exposure_of``, the state's tag and day caches, ``records.TIMESTAMP``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from eventpipe.definitions import EXPOSURE_EVENT, Exposure, engagement_name, exposure_of, user_key
from eventpipe.stream.fold import Folded, PartitionState
from eventpipe.stream.records import REQUIRED_TEXT, TIMESTAMP
from eventpipe.textruns import each_fullmatches, run_of

Event = dict[str, Any]
# What makes ``extract`` refuse an event (``batch.add_event`` rejects it as "unfoldable").
UNFOLDABLE = (AttributeError, KeyError, TypeError, ValueError)
TEXT_OR_NONE = {str, type(None)}
# TIMESTAMP's pattern (without its "$") for newline-separated texts, matched in one pass
# the collector's timestamp form: "D" a digit, every other character fixed
CANONICAL = "DDDD-DD-DDTDD:DD:DD.DDDZ"
_DIGITS = [i for i, c in enumerate(CANONICAL) if c == "D"]
_FIXED = [i for i, c in enumerate(CANONICAL) if c != "D"]
_FIXED_BYTES = np.frombuffer("".join(CANONICAL[i] for i in _FIXED).encode(), dtype=np.uint8)
RUN_OF_TIMESTAMPS = run_of(TIMESTAMP.pattern.removesuffix("$"))


@dataclass
class Run:
    """Column ``i`` of each list belongs to the run's ``i``-th record."""

    events: list[Event]
    message_ids: list[str]
    received: list[str]  # receivedAt
    timestamps: list[str]
    hours: list[int]  # tag of the hour received
    users: list[str | None]
    names: list[str | None]  # engagement row name; None without a user or when not engagement
    days: list[str]  # canonical UTC date of the timestamp, "" when not counted
    day_tags: list[int]  # -1 when not counted
    exposures: dict[int, Exposure | None]  # index -> exposure, for events named EXPOSURE_EVENT

    def folded(self, i: int) -> Folded:
        """Record ``i`` as the row path's ``extract`` would have read it."""
        return Folded(
            self.message_ids[i],
            self.received[i],
            self.hours[i],
            self.users[i],
            self.exposures.get(i),
            self.names[i],
            self.days[i],
            self.day_tags[i],
            self.timestamps[i],
        )


def decode_run(state: PartitionState, values: list[bytes | None]) -> Run | None:
    """The run as columns, or ``None`` if any record needs the row path (module docstring).
    Uses the state's tag and day caches only (they do not change what the fold computes)."""
    try:
        return _decode(state, values)
    except (orjson.JSONDecodeError, *UNFOLDABLE):
        return None


def _decode(state: PartitionState, values: list[bytes | None]) -> Run | None:
    if None in values:
        return None
    events = [orjson.loads(v) for v in values]  # type: ignore[arg-type]  # None excluded above
    if any(type(e) is not dict for e in events):
        return None
    required = [[e.get(name) for e in events] for name in REQUIRED_TEXT]
    for column in required:
        if set(map(type, column)) != {str} or "" in column:
            return None
    message_ids, received, timestamps, _ = required
    if not _all_timestamps(received) or not _all_timestamps(timestamps):
        return None
    users = list(map(user_key, events))
    if not set(map(type, users)) <= TEXT_OR_NONE:
        return None
    names = [None if u is None else engagement_name(e) for e, u in zip(events, users, strict=True)]
    if not set(map(type, names)) <= TEXT_OR_NONE:
        return None
    hour_texts = [r[:13] for r in received]
    hour_of = {text: state._tag(text) for text in set(hour_texts)}
    day_of = {t[:10]: "" for t, x in zip(timestamps, names, strict=True) if x is not None}
    day_of = {text: state._day(text) for text in day_of}
    tag_of = {day: state._tag(day) for day in day_of.values()}
    days = ["" if x is None else day_of[t[:10]] for x, t in zip(names, timestamps, strict=True)]
    hours = list(map(hour_of.__getitem__, hour_texts))
    day_tags = [tag_of[d] if d else -1 for d in days]
    exposures = {i: _exposure(events[i]) for i, x in enumerate(names) if x == EXPOSURE_EVENT}
    return Run(events, message_ids, received, timestamps, hours, users, names, days, day_tags, exposures)


def _all_timestamps(texts: list[str]) -> bool:
    """``all(TIMESTAMP.match(t) for t in texts)``. When every text has the form the
    collector writes (``YYYY-MM-DDTHH:MM:SS.mmmZ``, ASCII), which ``TIMESTAMP`` accepts, the
    bytes are checked as one array; else one regex pass over the joined texts when none
    contains a newline (then each line must match the whole pattern, which is what ``match``
    with ``$`` accepts of a text without one); else text by text."""
    if _all_canonical(texts):
        return True
    in_one_pass = each_fullmatches(RUN_OF_TIMESTAMPS, texts)
    return all(map(TIMESTAMP.match, texts)) if in_one_pass is None else in_one_pass


def _exposure(event: Event) -> Exposure | None:
    """``exposure_of`` (for a track named EXPOSURE_EVENT), its common case inline: both ids
    non-empty strings (then ``exposure_of`` returns exactly them)."""
    props = event.get("properties")
    if type(props) is dict:
        experiment, variant = props.get("experiment_id"), props.get("variation_id")
        if type(experiment) is str and type(variant) is str and experiment and variant:
            return Exposure(experiment, variant)
    return exposure_of(event)


def _all_canonical(texts: list[str]) -> bool:
    """Every text is ``DDDD-DD-DDTDD:DD:DD.DDDZ`` with ASCII digits (a sufficient condition
    for ``TIMESTAMP``; a run that fails it is checked by the regex)."""
    if not texts or set(map(len, texts)) != {len(CANONICAL)}:
        return False
    try:
        raw = "".join(texts).encode("ascii")
    except UnicodeEncodeError:
        return False
    chars = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), len(CANONICAL))
    digits = chars[:, _DIGITS]
    fixed = chars[:, _FIXED] == _FIXED_BYTES
    return bool(((digits >= ord("0")) & (digits <= ord("9"))).all() and fixed.all())
