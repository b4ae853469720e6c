"""Settings only the stream worker reads, on top of the shared ``eventpipe.settings`` (same
``EVENTPIPE_`` prefix and ``.env`` file). Code that receives a plain ``Settings`` (tests,
other services) gets the defaults below."""

from __future__ import annotations

from pydantic import Field

from eventpipe.settings import Settings


class StreamSettings(Settings):
    s3_conditional_put: bool = Field(
        False,
        description="write raw/agg objects with If-None-Match: * (AWS S3 supports it; s3rver ignores it): "
        "the store itself then refuses to replace an object another worker wrote",
    )
    fault_commit_delay_s: float = Field(
        0.0,
        ge=0,
        le=10,
        description="FAULT INJECTION ONLY (fault scenario 8): wait this long after a cut's objects "
        "and changelog are written, before its offset commit, so a kill lands between upload and "
        "commit on purpose; 0 (the default) in every real deployment",
    )
