"""The nightly reprocess as an mrjob job (docs/contracts.md §6): the steps of
``eventpipe.loader.reprocess.steps`` (shared with the Spark engine), wired as four MRSteps.

The fifth step (sum the daily rows over persons) is no shuffle here: each reducer task of
step 4 sums its persons' daily rows in memory (one entry per distinct daily row of D: event
names x experiments x variants, not events or persons) and emits them at its end; the
caller adds the tasks' partial rows (``steps.merge_partials``). A person lives in exactly one
task, so the partial user counts add up to the persons.

Input lines are raw events (the Kafka value bytes archived under ``raw/events/``), rows of
the warehouse's assignments snapshot (``{"experiment_id", "user_key", "variant",
"first_exposed_at"}``, no ``messageId``: exposures from before the input window still
decide who is in which variant) or rows of its identities snapshot (``{"anonymous_id",
"user_id", "linked_at", "message_id"}``: links loaded from any earlier day).

Output: ``(row key, value)`` pairs: partial ``[event_count, user_count]`` of the daily rows
and ``[variant, first_exposed_at]`` of the assignments (``steps.merge_partials`` makes the
rows of contracts §3, ``corrections/``). ``--checked-inputs``: every raw line was already
checked as the loader checks it and packed (local inputs, ``inputs.download_inputs``), so
the first mapper passes those lines as they are; it packs the rest (snapshot rows, and every
``s3://`` line on EMR/Hadoop, which it checks). ``--packed-inputs``: every input line is packed
already (``runjob.run_job`` packs the snapshot files of a local run), so the first step has no
mapper at all -- on ``-r local`` a mapper task was a Python process per split passing every
line through mrjob's loop unchanged (~8 CPU-s of a 1M-line run). The first reducer reads packed lines
(``packed.read_packed``) and writes a lone copy's pre-encoded output without parsing it.
Run as a script by mrjob's local/hadoop/emr runners, hence the absolute imports.
"""

from __future__ import annotations

from datetime import date
from functools import cached_property
from typing import Any

import orjson
from mrjob.compat import jobconf_from_env
from mrjob.job import MRJob
from mrjob.step import MRStep

from eventpipe.loader.reprocess import steps
from eventpipe.loader.reprocess.packed import grouped_output, lone_output, read_packed
from eventpipe.loader.reprocess.rows import ASSIGNMENTS
from eventpipe.loader.reprocess.steps import LINK, TARGET, is_link_row, is_snapshot_row, sum_counts

__all__ = ["OrjsonProtocol", "ReprocessJob", "is_link_row", "is_snapshot_row"]
OPAQUE = "opaque"  # the hops' tag of an item they pass on as the bytes it came as


class OrjsonProtocol:
    """``key<TAB>value``, both JSON: mrjob's JSONProtocol format, encoded with orjson (faster).
    A pair already encoded (bytes, ``packed.Copy.outputs``) is written as it is."""

    def read(self, line: bytes) -> tuple[Any, Any]:
        key, _, value = line.partition(b"\t")
        return orjson.loads(key), orjson.loads(value)

    def write(self, key: Any, value: Any) -> bytes:
        if isinstance(key, bytes):
            return key + b"\t" + value
        return orjson.dumps(key) + b"\t" + orjson.dumps(value)


class HopProtocol(OrjsonProtocol):
    """The hops' (steps 2 and 3): they move events and snapshot rows to another key without
    reading them, so only links and targets are decoded; any other value stays the bytes it
    was written as (an ``[OPAQUE, bytes]`` item) and is written back unchanged -- no decode
    and re-encode of every slim event twice."""

    _DECODED = (b'["' + LINK.encode() + b'"', b'["' + TARGET.encode() + b'"')

    def read(self, line: bytes) -> tuple[Any, Any]:
        key, _, value = line.partition(b"\t")
        if value.startswith(self._DECODED):
            return orjson.loads(key), orjson.loads(value)
        return orjson.loads(key), (OPAQUE, value)

    def write(self, key: Any, value: Any) -> bytes:
        if value[0] == OPAQUE:
            return orjson.dumps(key) + b"\t" + value[1]
        return super().write(key, value)


class LineProtocol:
    """The first mapper's: a whole line in, a whole (packed) line out, nothing re-encoded."""

    def read(self, line: bytes) -> tuple[None, bytes]:
        return None, line

    def write(self, _: None, line: bytes) -> bytes:
        return line


class ReprocessJob(MRJob):
    INTERNAL_PROTOCOL = OrjsonProtocol
    OUTPUT_PROTOCOL = OrjsonProtocol
    _lines, _pairs, _hops = LineProtocol(), OrjsonProtocol(), HopProtocol()

    def configure_args(self) -> None:
        super().configure_args()
        self.add_passthru_arg("--day", required=True, help="the day D to recompute (YYYY-MM-DD)")
        self.add_passthru_arg(
            "--checked-inputs", action="store_true", help="raw lines were checked before (local inputs)"
        )
        self.add_passthru_arg(
            "--packed-inputs", action="store_true", help="every input line is packed (no first mapper)"
        )

    def steps(self) -> list[MRStep]:
        first = (
            MRStep(reducer=self.reduce_copies)
            if self.options.packed_inputs
            else MRStep(mapper=self.map_by_message, reducer=self.reduce_copies)
        )
        return [
            first,
            MRStep(reducer=self.reduce_first_hop),
            MRStep(reducer=self.reduce_second_hop),
            MRStep(reducer_init=self.start_rows, reducer=self.reduce_user, reducer_final=self.partial_rows),
        ]

    def _steps_desc(self) -> list[dict[str, Any]]:
        """mrjob gives a first step an identity mapper even when it has none (for the input
        protocol); with packed inputs there is nothing to map, so the runner gets none."""
        described: list[dict[str, Any]] = super()._steps_desc()
        if self.options.packed_inputs:
            described[0].pop("mapper", None)
        return described

    def _runner_class(self) -> Any:
        """``-r local`` splits task inputs by byte ranges (``local_runner``), not line by line."""
        if self.options.runner == "local":
            from eventpipe.loader.reprocess.local_runner import ByteSplitLocalRunner

            return ByteSplitLocalRunner
        return super()._runner_class()

    def pick_protocols(self, step_num: int, step_type: str) -> tuple[Any, Any]:
        """The first step reads packed lines (``packed``), the hops leave items encoded
        (``HopProtocol``); the rest are orjson pairs."""
        if step_num == 0 and step_type == "mapper":
            return self._lines.read, self._lines.write
        if step_num == 0 and step_type == "reducer":
            return read_packed, self._pairs.write
        if step_num in (1, 2) and step_type == "reducer":
            return self._hops.read, self._hops.write
        return super().pick_protocols(step_num, step_type)

    def run_reducer(self, step_num: int = 0) -> None:
        """The first reducer groups its sorted lines by their key's bytes (what the sort
        grouped) and writes a lone copy's pre-encoded output as it is cut from its line
        (``packed.lone_output``), without mrjob's decode/group/encode per line; groups of
        several lines (copies, snapshot rows) go through ``reduce_copies`` as before."""
        if step_num != 0:
            super().run_reducer(step_num)
            return
        read, write = self.pick_protocols(0, "reducer")

        def reduce_group(group: list[bytes]) -> list[bytes]:
            if len(group) == 1:
                lone = lone_output(group[0])
                if lone is not None:
                    return lone
            pairs = [read(line) for line in group]
            return [write(k, v) for k, v in self.reduce_copies(pairs[0][0], (v for _, v in pairs))]

        lines = (line.rstrip(b"\r\n") for line in self._read_input())
        for block in grouped_output(lines, reduce_group):
            self.stdout.write(block)

    @cached_property  # read per line by the first mapper
    def day(self) -> date:
        return date.fromisoformat(self.options.day)

    def map_by_message(self, _: None, line: bytes) -> Any:
        where = lambda: jobconf_from_env("mapreduce.map.input.file", "an input file")  # noqa: E731
        for packed_line in steps.map_line(line, self.day, where, checked=self.options.checked_inputs):
            yield None, packed_line

    def reduce_copies(self, key: Any, values: Any) -> Any:
        return steps.reduce_copies(key, values, self.day)

    def reduce_first_hop(self, some_id: str, values: Any) -> Any:
        return steps.reduce_first_hop(some_id, values)

    def reduce_second_hop(self, some_id: str, values: Any) -> Any:
        return steps.reduce_second_hop(some_id, values)

    def start_rows(self) -> None:
        self.daily: dict[tuple[str, ...], list[int]] = {}

    def reduce_user(self, person: str, values: Any) -> Any:
        for key, value in steps.reduce_user(person, values, self.day):
            if key[0] == ASSIGNMENTS:
                yield key, value
                continue
            row = tuple(key)
            self.daily[row] = sum_counts(self.daily[row], value) if row in self.daily else value

    def partial_rows(self) -> Any:
        for row in sorted(self.daily):
            yield list(row), self.daily[row]


if __name__ == "__main__":
    ReprocessJob.run()
