"""Where batches come from: notices on the ``batches`` topic, and (the safety net)
listing S3 ``raw/`` and ``agg/`` from a persisted day watermark (contracts §4).

The watermark is the oldest ``dt=`` day that still had an unloaded object at the last
listing; listings start one day before it, so an object cut at a day boundary is seen.
A stream catching up after an outage may still write raw objects dated back to Kafka's
retention: the loader lists that whole window now and then (a deep scan).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from kafka.errors import KafkaError

from eventpipe.errors import StorageError
from eventpipe.keys import AGG_PREFIX, RAW_PREFIX
from eventpipe.loader.batches import Batch, parse_batch, table_of_key
from eventpipe.loader.listing import Marks
from eventpipe.loader.tables import TARGETS
from eventpipe.s3 import list_keys
from eventpipe.settings import Settings

log = logging.getLogger(__name__)
MAX_LIST_DAYS = 60  # a listing never walks more days than this, however old the watermark


@dataclass(frozen=True)
class Candidate:
    key: str
    table: str
    day: date | None  # the key's dt= partition
    modified: datetime | None  # S3 LastModified (None for a notice)


def _day_of(key: str) -> date | None:
    at = key.find("/dt=")
    try:
        return date.fromisoformat(key[at + 4 : at + 14]) if at >= 0 else None
    except ValueError:
        return None


def horizon(settings: Settings, today: date) -> date:
    """The oldest ``dt=`` day the loader lists or loads: within the ledger's retention (an
    object loaded before it may have lost its ledger row), and never more than 60 days back."""
    return today - timedelta(days=min(MAX_LIST_DAYS, settings.loader_retention_days - 2))


def prefixes(settings: Settings, since: date | None, today: date) -> list[str]:
    """The S3 prefixes one listing covers: whole trees without a watermark, else per day."""
    roots = [f"{settings.s3_prefix}{RAW_PREFIX}"] + [
        f"{settings.s3_prefix}{AGG_PREFIX}{t}/" for t in TARGETS if t != "events"
    ]
    if since is None:
        return roots
    first = max(since - timedelta(days=1), horizon(settings, today))
    days = [first + timedelta(days=n) for n in range((today - first).days + 2)]  # +1: clocks ahead
    return [f"{root}dt={day:%Y-%m-%d}/" for root in roots for day in days]


def list_candidates(
    s3: Any,
    settings: Settings,
    since: date | None,
    today: date,
    marks: Marks | None = None,
    now: datetime | None = None,
) -> list[Candidate]:
    """What the listings find: in full without ``marks`` (or a prefix never listed in
    full), else from each slot's mark (``listing.Marks``), which records what they return."""
    found: dict[str, Candidate] = {}
    try:
        for prefix in prefixes(settings, since, today):
            plan = [(prefix, "")] if marks is None or now is None else marks.plan(prefix, now)
            for listed_prefix, start_after in plan:
                listed = [
                    (o["Key"], o.get("LastModified"))
                    for o in list_keys(s3, settings.s3_bucket, listed_prefix, start_after)
                ]
                if marks is not None:
                    marks.listed(listed_prefix, start_after, listed)
                for key, modified in listed:
                    table = table_of_key(key, settings.s3_prefix)
                    if table:  # a slot's newest objects are the tail listing's too: once each
                        found.setdefault(key, Candidate(key, table, _day_of(key), modified))
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"listing S3 failed: {exc}") from exc
    return list(found.values())


def next_watermark(unloaded: list[Candidate], today: date) -> date:
    days = [c.day for c in unloaded if c.day is not None]
    return min([*days, today])


def fetch_batch(s3: Any, bucket: str, key: str, table: str) -> Batch:
    """Download and check one object; ``CorruptBatch`` if it can never load."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"reading {key} failed: {exc}") from exc
    if not body:  # every finished object holds a gzip member: this is a PUT torn (s3rver) or under way
        raise StorageError(f"{key} is empty: not written yet; retried next round")
    return parse_batch(key, table, body)


class Notices:
    """The ``batches`` topic, read with manual commits: offsets are committed only once
    every notice read so far is loaded (or quarantined), so a crash re-reads them."""

    def __init__(self, settings: Settings, group_id: str | None = None) -> None:
        from kafka import KafkaConsumer

        self.settings = settings
        self.consumer = KafkaConsumer(
            settings.batches_topic,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group_id or f"eventpipe-loader.{settings.batches_topic}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            consumer_timeout_ms=1000,
        )

    def poll(self, timeout_s: float) -> Iterator[Candidate]:
        try:
            records = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=500)
        except KafkaError:  # notices are hints: S3 listings still find every batch
            log.warning("polling the batches topic failed", exc_info=True)
            return
        for batch in records.values():
            for record in batch:
                try:
                    notice = orjson.loads(record.value)
                    key = notice["key"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    log.warning("unreadable batch notice skipped", extra={"offset": record.offset})
                    continue
                # only keys of our own layout: a notice must not make us read anything else
                table = table_of_key(key, self.settings.s3_prefix) if isinstance(key, str) else None
                if table in TARGETS:
                    yield Candidate(key, table, _day_of(key), None)
                else:
                    log.warning(
                        "batch notice for a key outside raw/ and agg/ skipped",
                        extra={"offset": record.offset},
                    )

    def commit(self) -> None:
        try:
            self.consumer.commit()
        except KafkaError:  # e.g. a rebalance: the notices come again and are skipped as loaded
            log.warning("committing batch notices failed", exc_info=True)

    def close(self) -> None:
        self.consumer.close()
