"""The job's inputs: raw objects of the received dates D-1 … D+L and the assignments snapshot.

Inline/local runners get local files: the objects are downloaded, decompressed and packed
into a few plain JSONL files. Packing matters: mrjob's local runner makes one map task (a
Python subprocess) per compressed file and reads only the first member of a concatenated
gzip, whereas a plain file is split into 2 x cores tasks. EMR/Hadoop get ``s3://`` globs,
one per received date that has objects: the cluster reads S3 itself, in parallel.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from psycopg2 import sql
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from eventpipe.keys import raw_day_prefix
from eventpipe.s3 import list_keys
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts

CHUNK_BYTES = 256 * 1024 * 1024  # plain bytes per packed input file


@dataclass
class Inputs:
    paths: list[str] = field(default_factory=list)  # local files or s3:// globs
    objects: int = 0
    lines: int = 0  # known for local inputs only


def raw_objects(client: Any, settings: Settings, days: Iterable[date]) -> list[dict[str, Any]]:
    """Every raw object of the received ``days`` (ListObjectsV2 entries, key order)."""
    found: list[dict[str, Any]] = []
    for day in days:
        found.extend(list_keys(client, settings.s3_bucket, settings.s3_prefix + raw_day_prefix(day)))
    return found


def s3_inputs(settings: Settings, objects: list[dict[str, Any]]) -> Inputs:
    """One glob per received date with objects (a glob matching nothing fails Hadoop)."""
    dates = sorted({obj["Key"].split("/dt=", 1)[1][:10] for obj in objects})
    base = f"s3://{settings.s3_bucket}/{settings.s3_prefix}raw/events"
    return Inputs([f"{base}/dt={d}/hr=*/*.jsonl.gz" for d in dates], objects=len(objects))


def download_inputs(
    client: Any, settings: Settings, objects: list[dict[str, Any]], workdir: Path, progress: bool = False
) -> Inputs:
    """Fetch, decompress and pack ``objects`` into ``workdir/raw-N.jsonl`` files."""
    out = Inputs(objects=len(objects))
    sink = None
    total = sum(int(obj.get("Size", 0)) for obj in objects)
    columns = (TextColumn("raw objects"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("download", total=total)
        try:
            for obj in objects:
                body = client.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])["Body"].read()
                plain = gzip.decompress(body)  # all gzip members, unlike mrjob's reader
                if plain and not plain.endswith(b"\n"):
                    plain += b"\n"
                if sink is None or (sink.tell() + len(plain) > CHUNK_BYTES and sink.tell()):
                    if sink is not None:
                        sink.close()
                    path = workdir / f"raw-{len(out.paths)}.jsonl"
                    out.paths.append(str(path))
                    sink = path.open("wb")
                sink.write(plain)
                out.lines += plain.count(b"\n")
                bar.advance(task, len(body))
        finally:
            if sink is not None:
                sink.close()
    return out


def export_snapshot(conn: Any, schema: str, day: date, path: Path) -> int:
    """Write the warehouse's assignments decided before ``day`` (contracts §6) as JSONL;
    returns the row count. Timestamps in the ``…SSS Z`` form so they compare as text
    with the events' own."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    query = sql.SQL(
        "SELECT experiment_id, user_key, variant, first_exposed_at FROM {} WHERE first_exposed_at < %s"
    ).format(sql.Identifier(schema, "experiment_assignments"))
    rows = 0
    with conn, conn.cursor(name="ep_reprocess_snapshot") as cur, path.open("wb") as sink:
        cur.itersize = 10_000  # server-side cursor: the table can be large
        cur.execute(query, (midnight,))
        for experiment_id, user, variant, first in cur:
            row = {"experiment_id": experiment_id, "user_key": user, "variant": variant}
            row["first_exposed_at"] = format_ts(first)
            sink.write(orjson.dumps(row) + b"\n")
            rows += 1
    return rows
