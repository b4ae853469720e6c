"""The nightly reprocess as an mrjob job (docs/contracts.md §6): three steps, each a thin
shell over ``eventpipe.rollup`` so the job and the stream share one definition of a count.

Input lines are either raw events (the Kafka value bytes archived under ``raw/events/``)
or rows of the warehouse's assignments snapshot (``{"experiment_id", "user_key",
"variant", "first_exposed_at"}``, no ``messageId``): exposures from before the input
window still decide who is in which variant.

1. key by ``messageId`` -> keep the canonical copy (``rollup.dedup``); snapshot rows are
   re-keyed by user.
2. key by user key -> ``rollup.rollup_user(events, prior=snapshot, days={D})``.
3. key by output row -> ``event_count`` = sum, ``user_count`` = number of users.

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
from eventpipe.loader.reprocess.lines import parse_line, record_problem
from eventpipe.loader.reprocess.rows import ASSIGNMENTS, matters_for, slim, to_row, user_contributions
from eventpipe.rollup import Assignment, dedup, rollup_user

_SNAPSHOT = "snapshot"
_SNAPSHOT_KEYS = frozenset(("experiment_id", "user_key", "variant", "first_exposed_at"))


def is_snapshot_row(record: Any) -> bool:
    """A row of the assignments snapshot (``export_snapshot``), never a raw event."""
    return isinstance(record, dict) and "messageId" not in record and record.keys() >= _SNAPSHOT_KEYS


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
        (event,) = dedup(values)
        if matters_for(event, self.day):
            yield user_key(event), ["event", slim(event)]

    def reduce_user(self, user: str, values: Any) -> Any:
        events: list[dict[str, Any]] = []
        prior: dict[str, Assignment] = {}
        for tag, value in values:
            if tag == _SNAPSHOT:
                prior[value["experiment_id"]] = Assignment(value["variant"], value["first_exposed_at"])
            else:
                events.append(value)
        if events:
            rollup = rollup_user(events, prior=prior, days={self.day})
            yield from user_contributions(user, rollup, prior, self.day)

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
