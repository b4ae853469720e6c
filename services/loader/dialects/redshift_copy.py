"""How Redshift COPYs a load group from S3: which objects go into one COPY, the manifest that
lists them, and which object each staged row count belongs to (pure, but for
``written_manifest``, the S3 adapter step).

- **One COPY per group** (a multi-entry manifest) for the shapes whose merge needs no row's
  batch key: ``events``, ``experiment_assignments`` and the nightly's ``<table>:final``. A
  COPY cannot tag a row with the file it came from, and a streamed delta's batch key decides
  whether the delta is already inside a final day (contracts §5): the delta tables
  (``engagement_daily``, ``experiment_daily``) keep one COPY per object, each tagged.
- **The manifest** lists exactly the objects the load claimed, each ``mandatory: true``
  (a missing object fails the COPY, never loads a part silently). Its name is a hash of
  those keys, so a retry of the same group writes the same object.
- **Its lifetime**: written just before the COPY, deleted as soon as the COPY returns,
  whether it succeeded or not (COPY has read every listed object by then; a retried
  transaction writes it again). Only a loader killed during the COPY leaves one behind: the
  next load of the same group replaces and deletes it, and docs/loader.md gives the S3
  lifecycle rule that expires any other under ``manifests/`` after a day.
- **Rows per object**: the group's COPY reports one total (``pg_last_copy_count()``);
  ``STL_LOAD_COMMITS`` has the lines scanned per file of that COPY, queried in the same
  transaction as AWS advises. They are used only when they account for every row
  (``rows_per_object``); otherwise the dialect stages the group again, one COPY per object.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from psycopg2 import sql

from eventpipe.loader.tables import DELTAS

log = logging.getLogger(__name__)


def one_copy_per_group(shape: str) -> bool:
    """True when a group of ``shape`` loads with one COPY (its rows need no batch key)."""
    return shape not in DELTAS


def copies(shape: str, keys: Sequence[str]) -> list[list[str]]:
    """The COPYs a group of ``keys`` of ``shape`` is staged with, each a list of keys."""
    if len(keys) > 1 and one_copy_per_group(shape):
        return [list(keys)]
    return [[key] for key in keys]


def manifest(bucket: str, keys: Sequence[str]) -> bytes:
    """The COPY manifest of ``keys``: every one listed, every one mandatory."""
    return orjson.dumps({"entries": [{"url": f"s3://{bucket}/{key}", "mandatory": True} for key in keys]})


def manifest_key(prefix: str, keys: Sequence[str]) -> str:
    """Where the manifest of ``keys`` is written: one name per set of keys, whatever their order."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return f"{prefix}{digest}.manifest"


def copy_count() -> sql.Composed:
    """The rows the session's last COPY loaded (all its files)."""
    return sql.SQL("SELECT PG_LAST_COPY_COUNT()").format()


def file_rows() -> sql.Composed:
    """Lines scanned per file by the session's last COPY (a file split into ranges has a
    row per range: summed)."""
    return sql.SQL(
        "SELECT TRIM({f}), SUM({n}) FROM {t} WHERE {q} = PG_LAST_COPY_ID() GROUP BY TRIM({f})"
    ).format(
        f=sql.Identifier("filename"), n=sql.Identifier("lines_scanned"),
        t=sql.Identifier("stl_load_commits"), q=sql.Identifier("query"),
    )  # fmt: skip


def _owner(bucket: str, keys: Sequence[str], filename: str) -> str | None:
    """The one key ``filename`` names: its URL, its key, or (``filename`` is CHAR(256)) a
    cut-off URL; None when it names none or several."""
    urls = {f"s3://{bucket}/{key}": key for key in keys}
    found = {
        key
        for url, key in urls.items()
        if filename in (url, key) or (len(filename) >= 255 and url.startswith(filename))
    }
    return found.pop() if len(found) == 1 else None


def rows_per_object(
    bucket: str, keys: Sequence[str], found: Sequence[tuple[object, ...]], total: int
) -> dict[str, int] | None:
    """Each key's row count from ``found`` (filename, lines) of one COPY of ``keys``; None
    unless every file is one of ``keys`` and the counts add up to ``total``."""
    rows = dict.fromkeys(keys, 0)
    for filename, lines in found:
        key = _owner(bucket, keys, str(filename).strip())
        if key is None:
            return None
        rows[key] += int(str(lines))
    return rows if sum(rows.values()) == total else None


@contextmanager
def written_manifest(s3: Any, bucket: str, key: str, body: bytes) -> Iterator[str]:
    """Adapter: the manifest at ``key`` for the duration of the block (its ``s3://`` URL),
    then deleted; a failed delete is logged, never fails the load (an orphan is harmless:
    nothing lists ``manifests/``)."""
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    try:
        yield f"s3://{bucket}/{key}"
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            log.warning("COPY manifest not deleted", extra={"key": key, "error": type(exc).__name__})
