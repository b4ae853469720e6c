"""The S3 API server the stack runs pages listings like S3: past 1,000 keys a listing
continues with a token. s3rver makes that token with DES, which Node's OpenSSL 3 refuses
unless its legacy provider is on; without it every listing of a busy prefix was a 500 and
the loader's safety-net scan found nothing (found on the shared stack, 2026-12-01)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from eventpipe.s3 import list_keys

pytestmark = pytest.mark.integration


def test_a_listing_of_more_than_one_page_returns_every_key(settings, s3):
    keys = [f"{settings.s3_prefix}many/{n:05}" for n in range(1001)]  # one page is 1,000 keys
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"x"), keys))
    listed = [obj["Key"] for obj in list_keys(s3, settings.s3_bucket, f"{settings.s3_prefix}many/")]
    assert listed == keys
