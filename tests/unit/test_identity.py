"""Identity stitching (eventpipe.identity) and per-person rollups against the independent
reference (tests/reference.py) on generated multi-id histories."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.identity import Link, Links, link_of
from eventpipe.rollup import rollup_user
from tests import reference
from tests.support.identities import stitched_histories


def ev(mid: str, kind: str, ts: str, user: str | None = None, anon: str | None = None, **kw: Any) -> dict:
    return {"type": kind, "messageId": mid, "userId": user, "anonymousId": anon,
            "timestamp": f"2026-11-26T{ts}.000Z", "receivedAt": f"2026-11-26T{ts}.000Z", **kw}  # fmt: skip


def test_identify_with_both_ids_and_alias_make_links_nothing_else_does():
    assert link_of(ev("m1", "identify", "09:00:00", "u", "a")) == Link(
        "a", "u", "2026-11-26T09:00:00.000Z", "m1"
    )
    assert link_of(ev("m2", "alias", "09:00:00", "new", previousId="old")).linked_id == "old"
    assert link_of(ev("m3", "identify", "09:00:00", "u")) is None  # no anonymousId
    assert link_of(ev("m4", "identify", "09:00:00", None, "a")) is None  # anonymous identify
    assert link_of(ev("m5", "track", "09:00:00", "u", "a", event="Buy")) is None  # not a link
    assert link_of(ev("m6", "alias", "09:00:00", "u", previousId="u")) is None  # to itself


def test_a_shared_device_keeps_its_first_account_and_never_merges_two():
    links = Links.from_events(
        [ev("m2", "identify", "10:00:00", "bob", "tablet"), ev("m1", "identify", "09:00:00", "ann", "tablet")]
    )
    assert links.person(ev("m3", "page", "08:00:00", None, "tablet")) == "ann"  # retroactive
    assert links.person(ev("m4", "track", "11:00:00", "bob", "tablet", event="Buy")) == "bob"


def test_alias_of_an_old_user_id_carries_the_anonymous_history_along_two_hops():
    links = Links.from_events(
        [
            ev("m1", "identify", "09:00:00", "old", "phone"),
            ev("m2", "alias", "10:00:00", "new", previousId="old"),
        ]
    )
    assert links.person(ev("m3", "page", "08:00:00", None, "phone")) == "new"
    assert links.person(ev("m4", "page", "08:00:00", "old")) == "new"
    assert links.person(ev("m5", "page", "08:00:00", "new", "laptop")) == "new"


def test_ties_on_the_link_time_go_to_the_lowest_message_id():
    first = [ev("m9", "identify", "09:00:00", "bob", "a"), ev("m1", "identify", "09:00:00", "ann", "a")]
    assert Links.from_events(first).resolve("a") == Links.from_events(first[::-1]).resolve("a") == "ann"


def per_person_truth(events: list[dict[str, Any]]) -> dict[str, dict]:
    """Production code: dedup, links, person grouping and per-person rollups, summed."""
    kept = reference.deduplicate(events)
    links = Links.from_events(kept)
    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in kept:
        by_person[links.person(event)].append(event)
    rows: dict[str, dict] = {"engagement_daily": defaultdict(lambda: [0, 0]),
                             "experiment_daily": defaultdict(lambda: [0, 0])}  # fmt: skip
    assignments = {}
    for person, mine in by_person.items():
        rollup = rollup_user(sorted(mine, key=lambda e: (e["timestamp"], e["messageId"])))
        for table, found in (
            ("engagement_daily", rollup.engagement),
            ("experiment_daily", rollup.experiment),
        ):
            for row, n in found.items():
                rows[table][row][0] += n
                rows[table][row][1] += 1
        assignments.update(
            {(x, person): (a.variant, a.first_exposed_at) for x, a in rollup.assignments.items()}
        )
    return {
        "engagement_daily": {k: tuple(v) for k, v in rows["engagement_daily"].items()},
        "experiment_daily": {k: tuple(v) for k, v in rows["experiment_daily"].items()},
        "experiment_assignments": assignments,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stitched_histories())
def test_person_rollups_equal_the_reference(history):
    assert per_person_truth(history) == reference.truth(history)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stitched_histories(), st.randoms(use_true_random=False))
def test_links_do_not_depend_on_arrival_order(history, rnd):
    kept = reference.deduplicate(history)
    shuffled = list(kept)
    rnd.shuffle(shuffled)
    a, b = Links.from_events(kept), Links.from_events(shuffled)
    assert a.best == b.best
    assert {a.person(e) for e in kept} == {b.person(e) for e in kept}


def test_stitching_changes_the_counts_the_raw_ids_would_give():
    """The issue's story: exposed anonymously, signed up, converted server-side."""
    events = [
        ev("m1", "track", "09:00:00", None, "phone", event="Experiment Viewed",
           properties={"experiment_id": "x", "variation_id": "green"}),
        ev("m2", "identify", "09:05:00", "ann", "phone"),
        ev("m3", "track", "09:10:00", "ann", None, event="Order Completed"),
    ]  # fmt: skip
    stitched, raw = per_person_truth(events), reference.truth(events, stitch=False)
    day = stitched["engagement_daily"]
    assert [k for k in day if k[1] == "*"] and day[next(k for k in day if k[1] == "*")] == (2, 1)
    assert raw["engagement_daily"][next(k for k in day if k[1] == "*")] == (2, 2)
    assert any(k[1:] == ("x", "green", "Order Completed") for k in stitched["experiment_daily"])
    assert not any(k[3] == "Order Completed" for k in raw["experiment_daily"])
