"""What ``EVENTPIPE_ENV=production`` refuses: weak secrets, judged by rule (pure).

The first guard compared exact default strings, so a keyword-form DSN with
``password=eventpipe``, an S3 secret ``s3rver`` or a one-character write key passed. Here
a secret is weak when it is short, or a known default in any case or form. Each service
also names the secrets it uses (``SERVICE_SECRETS``): those must be set explicitly, while a
secret a service never reads may be absent (docker-compose gives each service only its own).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MIN_WRITE_KEY_CHARS = 16  # Segment's are 32
MIN_SECRET_CHARS = 16  # AWS secret keys are 40; MinIO's minimum is 8
MIN_PASSWORD_CHARS = 12
KNOWN_DEFAULTS = frozenset(
    {
        "dev-write-key",
        "s3rver",
        "minioadmin",
        "eventpipe",
        "postgres",
        "password",
        "secret",
        "changeme",
        "admin",
    }
)
SERVICE_SECRETS = {
    "ingest": ("write_keys",),
    "stream": ("s3_access_key", "s3_secret_key"),
    "loader": ("s3_access_key", "s3_secret_key", "warehouse_dsn"),
}


def _weak(value: str, min_chars: int) -> bool:
    return len(value) < min_chars or value.strip().lower() in KNOWN_DEFAULTS


def dsn_password(dsn: str) -> str | None:
    """The password of a URL (``postgresql://u:p@h/db``) or keyword (``password=p``) DSN."""
    if "://" in dsn:
        password = urlsplit(dsn).password
        return unquote(password) if password is not None else None
    for part in dsn.split():
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() == "password":
            return value.strip("'\"")
    return None


def weak_secrets(write_keys: list[str] | None, s3_secret: str | None, dsn: str | None) -> list[str]:
    """Why each given secret is too weak for production (empty: all fine). ``None``: not checked."""
    problems = []
    for key in write_keys or ():
        if _weak(key, MIN_WRITE_KEY_CHARS):
            problems.append(f"a write key of {len(key)} characters is weak or a development key")
    if s3_secret is not None and _weak(s3_secret, MIN_SECRET_CHARS):
        problems.append("EVENTPIPE_S3_SECRET_KEY is weak or a known default")
    if dsn is not None:
        password = dsn_password(dsn)
        if password is not None and _weak(password, MIN_PASSWORD_CHARS):
            problems.append("the EVENTPIPE_WAREHOUSE_DSN password is weak or a known default")
    return problems
