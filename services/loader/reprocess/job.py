"""The nightly reprocess as an mrjob job (docs/contracts.md §6): the five steps of
``eventpipe.loader.reprocess.steps`` (shared with the Spark engine), wired as MRSteps.

Input lines are raw events (the Kafka value bytes archived under ``raw/events/``), rows of
the warehouse's assignments snapshot (``{"experiment_id", "user_key", "variant",
"first_exposed_at"}``, no ``messageId``: exposures from before the input window still
decide who is in which variant) or rows of its identities snapshot (``{"anonymous_id",
"user_id", "linked_at", "message_id"}``: links loaded from any earlier day).

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

from eventpipe.loader.reprocess import steps
from eventpipe.loader.reprocess.steps import is_link_row, is_snapshot_row

__all__ = ["OrjsonProtocol", "ReprocessJob", "is_link_row", "is_snapshot_row"]


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
        return steps.map_line(line, lambda: jobconf_from_env("mapreduce.map.input.file", "an input file"))

    def reduce_copies(self, key: Any, values: Any) -> Any:
        return steps.reduce_copies(key, values, self.day)

    def reduce_first_hop(self, some_id: str, values: Any) -> Any:
        return steps.reduce_first_hop(some_id, values)

    def reduce_second_hop(self, some_id: str, values: Any) -> Any:
        return steps.reduce_second_hop(some_id, values)

    def reduce_user(self, person: str, values: Any) -> Any:
        return steps.reduce_user(person, values, self.day)

    def combine_rows(self, key: list[str], values: Any) -> Any:
        return steps.combine_rows(key, values)

    def reduce_rows(self, key: list[str], values: Any) -> Any:
        return steps.reduce_rows(key, values)


if __name__ == "__main__":
    ReprocessJob.run()
