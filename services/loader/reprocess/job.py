"""The nightly reprocess as an mrjob job (docs/contracts.md §6): five steps, each a thin
shell over ``eventpipe.rollup`` / ``eventpipe.identity`` so the job and the stream share
one definition of a count.

Input lines are raw events (the Kafka value bytes archived under ``raw/events/``), rows of
the warehouse's assignments snapshot (``{"experiment_id", "user_key", "variant",
"first_exposed_at"}``, no ``messageId``: exposures from before the input window still
decide who is in which variant) or rows of its identities snapshot (``{"anonymous_id",
"user_id", "linked_at", "message_id"}``: links loaded from any earlier day).

1. key by ``messageId`` -> keep the canonical copy (``rollup.dedup``); its link (if any)
   is re-keyed by the linked id, the event (if it matters for D) and snapshot rows by the
   raw user key.
2. key by id -> its winning link (``identity.earlier``) moves the id's items one hop, and
   tells the id's own key where it points (for the second hop).
3. key by id -> the second hop: items are now keyed by person (``identity`` module doc).
4. key by person -> ``rollup.rollup_user(events, prior=snapshot, days={D})``.
5. key by output row -> ``event_count`` = sum, ``user_count`` = number of persons.

Output: ``(table, row)`` pairs in the shapes of contracts §3 (``corrections/``).
Run as a script by mrjob's local/hadoop/emr runners, hence the absolute imports.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from mrjob.compat import jobconf_from_env
from mrjob.job import MRJob
from mrjob.step import MRStep

from eventpipe.events import user_key
from eventpipe.identity import Link, earlier, link_of
from eventpipe.loader.reprocess.lines import parse_line, record_problem
from eventpipe.loader.reprocess.rows import ASSIGNMENTS, matters_for, slim, to_row, user_contributions
from eventpipe.rollup import Assignment, dedup, rollup_user

_SNAPSHOT, _LINK, _TARGET = "snapshot", "link", "target"
_SNAPSHOT_KEYS = frozenset(("experiment_id", "user_key", "variant", "first_exposed_at"))
_LINK_KEYS = frozenset(("anonymous_id", "user_id", "linked_at", "message_id"))


def is_snapshot_row(record: Any) -> bool:
    """A row of the assignments snapshot (``export_snapshot``), never a raw event."""
    return isinstance(record, dict) and "messageId" not in record and record.keys() >= _SNAPSHOT_KEYS


def is_link_row(record: Any) -> bool:
    """A row of the identities snapshot (``export_identities``), never a raw event."""
    return isinstance(record, dict) and "messageId" not in record and record.keys() >= _LINK_KEYS


def _hop(links: list[list[str]]) -> str | None:
    """The user id of the winning link among ``[user_id, linked_at, message_id]`` values."""
    best: Link | None = None
    for user, at, mid in links:
        candidate = Link("", user, at, mid)
        best = candidate if best is None else earlier(best, candidate)
    return None if best is None else best.user_id


class OrjsonProtocol:
    """``key<TAB>value``, both JSON: mrjob's JSONProtocol format, encoded with orjson (faster)."""

    def read(self, line: bytes) -> tuple[Any, Any]:
        key, _, value = line.partition(b"\t")
        return orjson.loads(key), orjson.loads(value)

    def write(self, key: Any, value: Any) -> bytes:
        return orjson.dumps(key) + b"\t" + orjson.dumps(value)


class ReprocessJob(MRJob):
    INTERNAL_PROTOCOL = OrjsonProtocol
    OUTPUT_PROTOCOL = OrjsonProtocol

    def configure_args(self) -> None:
        super().configure_args()
        self.add_passthru_arg("--day", required=True, help="the day D to recompute (YYYY-MM-DD)")

    def steps(self) -> list[MRStep]:
        return [
            MRStep(mapper=self.map_by_message, reducer=self.reduce_copies),
            MRStep(reducer=self.reduce_first_hop),
            MRStep(reducer=self.reduce_second_hop),
            MRStep(reducer=self.reduce_user),
            MRStep(combiner=self.combine_rows, reducer=self.reduce_rows),
        ]

    @property
    def day(self) -> date:
        return date.fromisoformat(self.options.day)

    def map_by_message(self, _: Any, line: str) -> Any:
        if not line.strip():  # the loader skips blank lines too (parse_batch)
            return
        record, problem = parse_line(line.replace("\r", " ") if "\r" in line else line)
        if problem is None and is_snapshot_row(record):
            yield [_SNAPSHOT, record["user_key"]], record
            return
        if problem is None and is_link_row(record):  # with the raw copies of its link event
            yield record["message_id"], [_LINK, record]
            return
        # local inputs were checked object by object (lines.event_lines); s3:// inputs
        # (EMR/Hadoop) were not: a raw line the loader would refuse fails the job, naming
        # its object -- never silently dropped (docs/reprocess.md, "Corrupt raw objects")
        problem = problem or record_problem(record)
        if problem is not None:
            where = jobconf_from_env("mapreduce.map.input.file", "an input file")
            raise ValueError(f"corrupt raw line in {where} ({problem[0]}: {problem[1]}): quarantine it")
        yield record["messageId"], record

    def reduce_copies(self, key: Any, values: Any) -> Any:
        if isinstance(key, list):  # snapshot rows of one user
            for row in values:
                yield key[1], [_SNAPSHOT, row]
            return
        copies, loaded = [], None
        for value in values:
            if isinstance(value, list):
                loaded = value[1]
            else:
                copies.append(value)
        if not copies:  # a link loaded from a day outside the window
            row = loaded
            yield row["anonymous_id"], [_LINK, [row["user_id"], row["linked_at"], row["message_id"]]]
            return
        (event,) = dedup(copies)
        link = link_of(event)
        if link is not None:
            yield link.linked_id, [_LINK, [link.user_id, link.linked_at, link.message_id]]
        if matters_for(event, self.day):
            yield user_key(event), ["event", slim(event)]

    def reduce_first_hop(self, some_id: str, values: Any) -> Any:
        items, links = [], []
        for tag, value in values:
            if tag == _LINK:
                links.append(value)
            else:
                items.append([tag, value])
        target = _hop(links)
        if target is not None:
            yield some_id, [_TARGET, target]
        for item in items:
            yield target or some_id, item

    def reduce_second_hop(self, some_id: str, values: Any) -> Any:
        items, target = [], some_id
        for tag, value in values:
            if tag == _TARGET:
                target = value
            else:
                items.append([tag, value])
        for item in items:
            yield target, item

    def reduce_user(self, person: str, values: Any) -> Any:
        events: list[dict[str, Any]] = []
        prior: dict[str, Assignment] = {}  # earliest over all the person's ids
        own: dict[str, Assignment] = {}  # rows already under the person's own key
        for tag, value in values:
            if tag == _SNAPSHOT:
                found = Assignment(value["variant"], value["first_exposed_at"])
                x = value["experiment_id"]
                if x not in prior or (found.first_exposed_at, found.variant) < (
                    prior[x].first_exposed_at,
                    prior[x].variant,
                ):
                    prior[x] = found
                if value["user_key"] == person:
                    own[x] = found
            else:
                events.append(value)
        rollup = rollup_user(events, prior=prior, days={self.day})
        yield from user_contributions(person, rollup, own, self.day)

    def combine_rows(self, key: list[str], values: Any) -> Any:
        if key[0] == ASSIGNMENTS:  # one value per (experiment, user): nothing to sum
            yield from ((key, value) for value in values)
            return
        events = users = 0
        for n, u in values:
            events += n
            users += u
        yield key, [events, users]

    def reduce_rows(self, key: list[str], values: Any) -> Any:
        for summed_key, value in self.combine_rows(key, values):
            yield summed_key[0], to_row(summed_key, value)


if __name__ == "__main__":
    ReprocessJob.run()
