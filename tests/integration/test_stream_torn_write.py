"""A raw object whose metadata was lost (s3rver keeps a killed PUT's body without it): the
replay must recover where that cut ended from its lines, not stall the partition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from eventpipe.keys import raw_key
from eventpipe.s3 import gzip_lines
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.storage import S3Writer


def test_cut_recovered_from_the_lines_of_a_torn_raw_object(settings, s3):
    key = raw_key(datetime(2026, 11, 26, 10, tzinfo=UTC), 3, 120)
    lines = [b'{"messageId": "m%d"}' % i for i in range(7)]
    s3.put_object(
        Bucket=settings.s3_bucket, Key=settings.s3_prefix + key, Body=gzip_lines(lines)
    )  # no metadata
    writer = S3Writer(settings, StreamMetrics(), attempts=2)
    assert asyncio.run(writer.recorded_last_offset(key)) == 126  # 120 + 7 lines - 1
    # with the metadata there, it wins over the lines: a value the lines cannot give shows
    # which of the two was read
    s3.put_object(
        Bucket=settings.s3_bucket,
        Key=settings.s3_prefix + key,
        Body=gzip_lines(lines),
        Metadata={"last-offset": "131"},
    )
    assert asyncio.run(writer.recorded_last_offset(key)) == 131


def test_an_empty_torn_raw_object_records_no_cut(settings, s3):
    """Killed before the body's first byte, s3rver keeps an empty file under the key: it
    records nothing, so the replay must write the cut as new instead of stalling on it
    (fault scenario 8 met it: one partition retried forever, 558 events never archived)."""
    key = raw_key(datetime(2026, 11, 26, 10, tzinfo=UTC), 3, 140)
    s3.put_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + key, Body=b"")  # no metadata
    writer = S3Writer(settings, StreamMetrics(), attempts=2)
    assert asyncio.run(writer.recorded_last_offset(key)) is None
