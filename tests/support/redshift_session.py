"""Stand-ins for what the Redshift dialect's adapter steps talk to, for unit tests of their
logic (Redshift cannot run here; tests/integration/test_redshift_manifest.py writes the
manifests to the real S3 API server): a session that records the statements and answers
the COPY's counts, and an S3 that keeps objects in memory."""

from __future__ import annotations

from collections.abc import Mapping

from tests.support.dialect_sql import render


class MemoryS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[f"{Bucket}/{Key}"] = Body

    def delete_object(self, Bucket: str, Key: str) -> None:
        self.objects.pop(f"{Bucket}/{Key}", None)


class RecordingCursor:
    """Records what the adapter sends. Each COPY "loads" ``copied`` rows (what
    ``PG_LAST_COPY_COUNT()`` answers) and ``files`` are its per-file lines (what the
    ``STL_LOAD_COMMITS`` query answers); ``at_copy`` keeps what ``s3`` held at each COPY
    (the manifest the cluster reads then)."""

    def __init__(
        self, s3: MemoryS3 | None = None, copied: int = 7, files: Mapping[str, int] | None = None
    ) -> None:
        self.sent: list[str] = []
        self.s3, self.copied, self.files = s3, copied, dict(files or {})
        self.at_copy: list[dict[str, bytes]] = []

    def execute(self, statement, vars=None) -> None:
        text = statement if isinstance(statement, str) else render(statement)
        self.sent.append(text)
        if text.startswith("COPY ") and self.s3 is not None:
            self.at_copy.append(dict(self.s3.objects))

    def fetchone(self):
        return (self.copied,)

    def fetchall(self):
        return list(self.files.items())
