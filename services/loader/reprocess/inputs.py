"""The job's inputs: raw objects of the received dates D-1 … D+L and the assignments snapshot.

The job reads exactly what the warehouse could load: objects in the loader's ``quarantine``
table are left out (``skipped``), and every other object is checked line by line as the
loader checks it (``lines.event_lines``); one the loader would refuse is set aside as
``corrupt`` (the loader has not quarantined it, or not yet) and the pipeline decides.

Inline/local runners get local files: the objects are downloaded, checked, decompressed and
packed into a few plain JSONL files. Packing matters: mrjob's local runner makes one map task
(a Python subprocess) per compressed file and reads only the first member of a concatenated
gzip, whereas a plain file is split into 2 x cores tasks. EMR/Hadoop get ``s3://`` globs,
one per received date that has objects: the cluster reads S3 itself, in parallel. A date
holding a quarantined object gets one glob per hour instead, and the hours holding one get
their other objects as explicit keys, so the quarantined ones are never read.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from eventpipe.keys import raw_day_prefix
from eventpipe.loader.batches import CorruptBatch
from eventpipe.loader.dialects.bookkeeping import assignments_before, identity_links
from eventpipe.loader.reprocess.lines import event_records
from eventpipe.loader.reprocess.packed import store_ref
from eventpipe.loader.reprocess.steps import pack_event
from eventpipe.s3 import list_keys
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts

CHUNK_BYTES = 256 * 1024 * 1024  # raw bytes per packed input file (in its store)
QUARANTINED = "quarantined"  # the reason of an object skipped because the loader quarantined it


@dataclass
class SkippedObject:
    """A raw object the job did not read: ``reason`` is ``quarantined`` (the loader set it
    aside) or the loader's own reason code for an object it would refuse (bad_gzip, bad_json,
    bad_shape, bad_value)."""

    key: str
    reason: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Inputs:
    paths: list[str] = field(default_factory=list)  # local files, s3:// globs or s3:// keys
    objects: int = 0  # raw objects read
    lines: int = 0  # known for local inputs only
    skipped: list[SkippedObject] = field(default_factory=list)  # quarantined: left out, known
    corrupt: list[SkippedObject] = field(default_factory=list)  # refused, not quarantined
    listed: list[str] = field(default_factory=list)  # every raw key of the window: the watermark


def raw_objects(client: Any, settings: Settings, days: Iterable[date]) -> list[dict[str, Any]]:
    """Every raw object of the received ``days`` (ListObjectsV2 entries, key order)."""
    found: list[dict[str, Any]] = []
    for day in days:
        found.extend(list_keys(client, settings.s3_bucket, settings.s3_prefix + raw_day_prefix(day)))
    return found


def s3_inputs(
    settings: Settings, objects: list[dict[str, Any]], quarantined: Collection[str] = frozenset()
) -> Inputs:
    """One glob per received date with objects (a glob matching nothing fails Hadoop); a date
    with quarantined objects: one glob per hour without any, explicit keys for the others."""
    base = f"s3://{settings.s3_bucket}/{settings.s3_prefix}raw/events"
    out = Inputs()
    by_hour: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for obj in objects:
        key = obj["Key"]
        if key in quarantined:
            out.skipped.append(SkippedObject(key, QUARANTINED))
            continue
        partition = key.split("/dt=", 1)[1]  # YYYY-MM-DD/hr=HH/<name>
        by_hour[partition[:10]][partition[11:16]].append(key)
        out.objects += 1
    dirty = {o.key.split("/dt=", 1)[1][:16] for o in out.skipped}  # YYYY-MM-DD/hr=HH
    for day in sorted(by_hour):
        if not any(d.startswith(day) for d in dirty):
            out.paths.append(f"{base}/dt={day}/hr=*/*.jsonl.gz")
            continue
        for hour, keys in sorted(by_hour[day].items()):
            if f"{day}/{hour}" in dirty:
                out.paths.extend(f"s3://{settings.s3_bucket}/{k}" for k in keys)
            else:
                out.paths.append(f"{base}/dt={day}/{hour}/*.jsonl.gz")
    return out


class Packer:
    """Checks raw objects as the loader does and packs the lines of the good ones for the
    job's first step (``steps.pack_event``: keyed by ``messageId``, with the step's output for
    a lone copy, computed from the parse the check made) into files of at most
    ``CHUNK_BYTES`` of raw lines (``workdir/<name>-N.jsonl``), recorded in ``out``. The raw
    lines themselves go to a store beside each (``<name>-N.store``) and the packed line
    refers to them (``packed.store_ref``): the shuffle carries them no more. ``day`` is the
    day the job recomputes (what a lone copy's output depends on).
    ``packing.ParallelPacker`` runs one per worker process."""

    def __init__(self, workdir: Path, out: Inputs, day: date, name: str = "raw") -> None:
        self.workdir, self.out, self.day, self.name = workdir, out, day, name
        self.sink: BinaryIO | None = None
        self.store: BinaryIO | None = None
        self.store_path = b""

    def add(self, key: str, body: bytes) -> None:
        try:
            records = event_records(key, body)  # all gzip members, unlike mrjob's reader
        except CorruptBatch as exc:
            self.out.corrupt.append(SkippedObject(key, exc.reason, exc.detail[:300]))
            return
        self.out.objects += 1
        if not records:
            return
        raw = b"".join(line + b"\n" for line, _ in records)
        if self.store is None or (self.store.tell() + len(raw) > CHUNK_BYTES and self.store.tell()):
            self._next_files()
        assert self.sink is not None and self.store is not None
        offset, packed = self.store.tell(), []
        for line, record in records:
            packed.append(pack_event(line, record, self.day, store_ref(self.store_path, offset, len(line))))
            packed.append(b"\n")
            offset += len(line) + 1
        self.store.write(raw)
        self.sink.write(b"".join(packed))
        self.out.lines += len(records)

    def _next_files(self) -> None:
        self.close()
        path = self.workdir / f"{self.name}-{len(self.out.paths)}.jsonl"
        self.out.paths.append(str(path))
        self.sink = path.open("wb")
        self.store_path = os.fsencode(os.path.abspath(path.with_suffix(".store")))
        if b"\t" in self.store_path or b"\n" in self.store_path:  # packed lines split on them
            raise ValueError(f"the job's work dir must not hold a tab or newline: {str(self.workdir)!r}")
        self.store = open(self.store_path, "wb")  # noqa: SIM115 -- closed by close()

    def flush(self) -> None:
        if self.sink is not None and self.store is not None:
            self.store.flush()
            self.sink.flush()

    def close(self) -> None:
        if self.sink is not None and self.store is not None:
            self.store.close()
            self.sink.close()
            self.sink = self.store = None


def download_inputs(
    client: Any,
    settings: Settings,
    objects: list[dict[str, Any]],
    workdir: Path,
    day: date,
    progress: bool = False,
    quarantined: Collection[str] = frozenset(),
) -> Inputs:
    """Fetch, check and pack ``objects`` for the job of ``day`` into ``workdir/raw-*.jsonl``
    files; objects in ``quarantined`` are not fetched, objects the loader would refuse are
    not packed. Checking and packing run on ``settings.reprocess_tasks`` (default: every
    core) worker processes (``packing``)."""
    from eventpipe.loader.reprocess.packing import ParallelPacker  # it builds on Packer

    out = Inputs()
    packer = ParallelPacker(workdir, out, day, settings.reprocess_tasks or os.cpu_count() or 1)
    total = sum(int(obj.get("Size", 0)) for obj in objects)
    columns = (TextColumn("raw objects"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("download", total=total)
        try:
            for obj in objects:
                key = obj["Key"]
                if key in quarantined:
                    out.skipped.append(SkippedObject(key, QUARANTINED))
                    bar.advance(task, int(obj.get("Size", 0)))
                    continue
                body = client.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()
                bar.advance(task, len(body))
                packer.add(key, body)
        finally:
            packer.close()
    return out


def export_snapshot(conn: Any, schema: str, day: date, path: Path) -> int:
    """Write the warehouse's assignments decided before ``day`` (contracts §6) as JSONL;
    returns the row count. Timestamps in the ``…SSS Z`` form so they compare as text
    with the events' own."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows = 0
    with conn, conn.cursor(name="ep_reprocess_snapshot") as cur, path.open("wb") as sink:
        cur.itersize = 10_000  # server-side cursor: the table can be large
        cur.execute(assignments_before(schema, midnight))
        for experiment_id, user, variant, first in cur:
            row = {"experiment_id": experiment_id, "user_key": user, "variant": variant}
            row["first_exposed_at"] = format_ts(first)
            sink.write(orjson.dumps(row) + b"\n")
            rows += 1
    return rows


def export_identities(conn: Any, schema: str, path: Path) -> int:
    """Write every identity link the warehouse holds (contracts §7) as JSONL, so links of
    any earlier day re-attribute the window's events; returns the row count."""
    rows = 0
    with conn, conn.cursor(name="ep_reprocess_identities") as cur, path.open("wb") as sink:
        cur.itersize = 10_000
        cur.execute(identity_links(schema))
        for anonymous_id, user_id, linked_at, message_id in cur:
            row = {"anonymous_id": anonymous_id, "user_id": user_id, "linked_at": format_ts(linked_at)}
            row["message_id"] = message_id
            sink.write(orjson.dumps(row) + b"\n")
            rows += 1
    return rows
