"""EVENTPIPE_ENV=production refuses weak secrets by rule, and each service needs its own set."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from eventpipe.errors import ConfigurationError
from eventpipe.production import dsn_password
from eventpipe.settings import Settings

STRONG = {
    "write_keys": "wk_" + "a1" * 16 + ":web",
    "s3_secret_key": "s3-" + "b2" * 12,
    "warehouse_dsn": "postgresql://eventpipe:" + "c3" * 10 + "@db:5432/eventpipe",
}


def prod(**given: str) -> Settings:
    return Settings(env="production", **given)


@pytest.mark.parametrize(
    ("field", "weak"),
    [
        ("write_keys", "dev-write-key:dev"),
        ("write_keys", "k:web"),  # one character
        ("write_keys", "wk_" + "a1" * 16 + ":web,short:ios"),  # one weak key among strong ones
        ("s3_secret_key", "S3RVER"),
        ("s3_secret_key", "s3rver"),
        ("s3_secret_key", "minioadmin"),
        ("s3_secret_key", "only-12-char"),
        ("warehouse_dsn", "postgresql://eventpipe:eventpipe@db:5432/eventpipe"),
        ("warehouse_dsn", "host=db dbname=eventpipe user=eventpipe password=eventpipe"),
        ("warehouse_dsn", "host=db user=eventpipe password='Postgres'"),
        ("warehouse_dsn", "postgresql://eventpipe:short@db/eventpipe"),
    ],
)
def test_weak_secrets_are_refused_in_any_form(field, weak):
    with pytest.raises(ValidationError, match="EVENTPIPE_ENV=production"):
        prod(**{**STRONG, field: weak})
    Settings(**{**STRONG, field: weak})  # development: fine


def test_strong_secrets_pass_and_stay_out_of_repr():
    settings = prod(**STRONG)
    text = repr(settings)
    assert "a1a1" not in text and "b2b2" not in text and "c3c3" not in text
    assert isinstance(settings.s3_secret_key, SecretStr)


@pytest.mark.parametrize(
    ("service", "given", "missing"),
    [
        ("ingest", {}, "EVENTPIPE_WRITE_KEYS"),
        ("stream", {"write_keys": STRONG["write_keys"]}, "EVENTPIPE_S3_SECRET_KEY"),
        (
            "loader",
            {"s3_access_key": "svc", "s3_secret_key": STRONG["s3_secret_key"]},
            "EVENTPIPE_WAREHOUSE_DSN",
        ),
    ],
)
def test_a_service_needs_its_own_secrets_set_and_only_those(service, given, missing):
    with pytest.raises(ConfigurationError, match=missing):
        prod(**given).require_secrets(service)


def test_the_collector_runs_without_database_or_s3_credentials():
    prod(write_keys=STRONG["write_keys"]).require_secrets("ingest")  # no DSN, no S3 secret: fine
    Settings().require_secrets("loader")  # development: defaults are fine


def test_dsn_passwords_in_both_forms():
    assert dsn_password("postgresql://u:p%40ss@h/db") == "p@ss"
    assert dsn_password("host=h password=x1 user=u") == "x1"
    assert dsn_password("postgresql://u@h/db") is None


def test_a_child_process_can_be_handed_the_same_settings():
    settings = Settings(**STRONG)
    assert settings.environment()["EVENTPIPE_S3_SECRET_KEY"] == STRONG["s3_secret_key"]
    assert settings.environment()["EVENTPIPE_WRITE_KEYS"] == STRONG["write_keys"]
    assert STRONG["s3_secret_key"] not in settings.model_dump_json()  # masked by default
    again = Settings.model_validate_json(settings.model_dump_json(context={"reveal_secrets": True}))
    assert again.write_key_map == settings.write_key_map
    assert again.environment() == settings.environment()
