"""Redshift's one COPY per load group (issue 16), as far as it can be proven without a
cluster: the manifest, the statements (through the Redshift lint) and the adapter's logic
against a recording session. The manifest on the real S3 API server and the claimed
objects: tests/integration/test_redshift_manifest.py."""

from __future__ import annotations

import orjson
import pytest

from eventpipe.bootstrap import build_dialect
from eventpipe.loader.batches import Batch
from eventpipe.loader.dialects.redshift_copy import copies, manifest, manifest_key, rows_per_object
from eventpipe.loader.dialects.redshift_lint import problems
from eventpipe.settings import Settings
from tests.support.dialect_sql import redshift, render
from tests.support.redshift_session import MemoryS3, RecordingCursor

RAW = [f"p/raw/events/dt=2026-11-20/hr=12/events+{p}+000000000000000000{p}.jsonl.gz" for p in range(3)]


def test_the_manifest_lists_every_key_once_each_mandatory():
    entries = orjson.loads(manifest("lake", RAW))["entries"]
    assert entries == [{"url": f"s3://lake/{key}", "mandatory": True} for key in RAW]


def test_one_manifest_name_per_set_of_keys():
    name = manifest_key("p/manifests/", RAW)
    assert name.startswith("p/manifests/") and name.endswith(".manifest")
    assert manifest_key("p/manifests/", list(reversed(RAW))) == name  # a retry, in another order
    assert manifest_key("p/manifests/", RAW[:2]) != name
    assert manifest_key("p/manifests/", RAW[:1]) != manifest_key("p/manifests/", RAW[1:2])


def test_groups_copy_once_but_deltas_copy_per_object():
    assert copies("events", RAW) == [RAW]
    assert copies("experiment_assignments", RAW[:2]) == [RAW[:2]]
    assert copies("engagement_daily", RAW[:2]) == [[RAW[0]], [RAW[1]]]  # a delta keeps its batch key
    assert copies("experiment_daily", RAW[:2]) == [[RAW[0]], [RAW[1]]]
    assert copies("events", RAW[:1]) == [RAW[:1]]


def test_a_group_statement_is_one_copy_of_its_manifest_and_passes_the_lint():
    dialect = redshift()
    statements = [render(s) for s in dialect.stage_statements("events", RAW)]
    copy, count, per_file = statements
    assert f"FROM 's3://lake/{manifest_key('manifests/', RAW)}'" in copy
    for part in ("MANIFEST", "MAXERROR 0", "GZIP", "FORMAT AS JSON 'auto ignorecase'"):
        assert part in copy
    assert count == "SELECT PG_LAST_COPY_COUNT()"
    assert '"stl_load_commits"' in per_file and "PG_LAST_COPY_ID()" in per_file
    for text in statements:
        assert problems(text) == [], text


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ([(f"s3://lake/{k}", n) for k, n in zip(RAW, (3, 4, 5), strict=True)], [3, 4, 5]),
        ([(f"{k}   ", n) for k, n in zip(RAW, (3, 4, 5), strict=True)], [3, 4, 5]),  # the key, CHAR-padded
        ([(f"s3://lake/{RAW[0]}", 2), (f"s3://lake/{RAW[0]}", 1), (f"s3://lake/{RAW[1]}", 9)], [3, 9, 0]),
    ],
    ids=["urls", "keys", "split-file"],
)
def test_rows_per_object_from_the_per_file_counts(found, expected):
    assert rows_per_object("lake", RAW, found, sum(expected)) == dict(zip(RAW, expected, strict=True))


def test_counts_that_do_not_account_for_every_row_are_refused():
    found = [(f"s3://lake/{RAW[0]}", 3), (f"s3://lake/{RAW[1]}", 4)]
    assert rows_per_object("lake", RAW, found, 8) is None  # a row the files do not explain
    assert rows_per_object("lake", RAW, [("s3://lake/elsewhere.gz", 7)], 7) is None
    cut = f"s3://lake/{'x' * 300}"  # CHAR(256): a long URL is cut off
    assert rows_per_object("lake", ["x" * 300], [(cut[:256], 5)], 5) == {"x" * 300: 5}
    twins = ["y" * 300 + "1", "y" * 300 + "2"]
    assert rows_per_object("lake", twins, [(f"s3://lake/{twins[0]}"[:256], 5)], 5) is None  # ambiguous


def _dialect(s3: MemoryS3):
    role = "arn:aws:iam::1:role/r"
    settings = Settings(warehouse_dialect="redshift", redshift_iam_role=role, s3_prefix="p/")
    return build_dialect(settings, s3)


def test_a_group_is_staged_with_one_copy_and_its_manifest_lives_only_while_it_runs():
    s3 = MemoryS3()
    files = {f"s3://eventpipe/{k}": n for k, n in zip(RAW, (3, 4, 5), strict=True)}
    cur = RecordingCursor(s3, copied=12, files=files)
    rows = _dialect(s3).stage(cur, "events", [Batch(k, "events", []) for k in RAW])
    assert rows == dict(zip(RAW, (3, 4, 5), strict=True))
    assert [t for t in cur.sent if t.startswith("COPY ")] == [cur.sent[0]]  # one COPY
    ((name, body),) = cur.at_copy[0].items()
    assert name == f"eventpipe/{manifest_key('p/manifests/', RAW)}"
    assert [e["url"] for e in orjson.loads(body)["entries"]] == [f"s3://eventpipe/{k}" for k in RAW]
    assert s3.objects == {}  # deleted once the COPY returned
    assert not any(t.startswith('UPDATE "ep_stage"') for t in cur.sent)  # no batch key to tag


def test_a_group_whose_files_do_not_add_up_is_staged_again_one_object_at_a_time():
    s3 = MemoryS3()
    cur = RecordingCursor(s3, copied=7, files={"s3://eventpipe/somewhere-else": 7})
    rows = _dialect(s3).stage(cur, "events", [Batch(k, "events", []) for k in RAW])
    assert rows == dict.fromkeys(RAW, 7)
    copies_sent = [t for t in cur.sent if t.startswith("COPY ")]
    assert len(copies_sent) == 1 + len(RAW)
    first_again = cur.sent.index(copies_sent[1])
    assert cur.sent[first_again - 2 : first_again] == [
        'DROP TABLE IF EXISTS "ep_stage"',
        cur.sent[first_again - 1],
    ] and cur.sent[first_again - 1].startswith('CREATE TEMP TABLE "ep_stage"')  # the group's rows gone
    assert [len(orjson.loads(b)["entries"]) for seen in cur.at_copy for b in seen.values()] == [3, 1, 1, 1]
    assert s3.objects == {}


def test_deltas_keep_one_copy_per_object_each_tagged_with_its_key():
    s3 = MemoryS3()
    keys = ["p/agg/engagement_daily/a.jsonl.gz", "p/agg/engagement_daily/b.jsonl.gz"]
    cur = RecordingCursor(s3, copied=2)
    rows = _dialect(s3).stage(cur, "engagement_daily", [Batch(k, "engagement_daily", []) for k in keys])
    assert rows == dict.fromkeys(keys, 2)
    tags = [t for t in cur.sent if t.startswith('UPDATE "ep_stage" SET "batch_key"')]
    assert [k for k in keys if any(f"'{k}'" in t for t in tags)] == keys
    listed = [[e["url"] for e in orjson.loads(b)["entries"]] for seen in cur.at_copy for b in seen.values()]
    assert listed == [[f"s3://eventpipe/{k}"] for k in keys]
