"""docker-compose.yml is valid (Debian's docker-compose validates it, no engine needed), and
it keeps its operational promises: healthchecks, health-gated start order, named volumes,
no insecure secret defaults, a scalable stream, and .env.example naming every setting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ONE_SHOTS = {"kafka-init", "minio-init"}
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-1",
    "GRAFANA_WAREHOUSE_PASSWORD": "reader-secret-1",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret-1",
    "MINIO_ROOT_USER": "minio-admin",
    "MINIO_ROOT_PASSWORD": "minio-secret-1",
    "EVENTPIPE_S3_ACCESS_KEY": "eventpipe-s3",
    "EVENTPIPE_S3_SECRET_KEY": "s3-secret-12",
    "EVENTPIPE_WRITE_KEYS": "prod-key-1:web",
}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose not installed"
)


def project_copy(tmp_path: Path, env: dict[str, str]) -> Path:
    """The compose file in a scratch project directory with its own .env (never the repo's)."""
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return tmp_path


def compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("EVENTPIPE_")}
    return subprocess.run(
        [
            "docker-compose",
            "--project-directory",
            str(project),
            "-f",
            str(project / "docker-compose.yml"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=project,
    )


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@needs_compose
def test_compose_config_is_valid(tmp_path: Path) -> None:
    result = compose(project_copy(tmp_path, SECRETS), "config", "-q")
    assert result.returncode == 0, result.stderr


@needs_compose
def test_compose_resolves_secrets_into_services(tmp_path: Path) -> None:
    result = compose(project_copy(tmp_path, SECRETS), "config")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    loader_env = resolved["loader"]["environment"]
    assert (
        loader_env["EVENTPIPE_WAREHOUSE_DSN"] == "postgresql://eventpipe:pg-secret-1@postgres:5432/eventpipe"
    )
    assert loader_env["EVENTPIPE_ENV"] == "production"
    assert resolved["ingest"]["environment"]["EVENTPIPE_INGEST_HOST"] == "0.0.0.0"


@needs_compose
@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = compose(project_copy(tmp_path, env), "config", "-q")
    assert result.returncode != 0
    assert missing in result.stderr


def test_every_service_has_a_healthcheck_or_is_a_one_shot(spec: dict[str, Any]) -> None:
    for name, service in spec["services"].items():
        if name in ONE_SHOTS:
            assert service.get("restart") == "no", name
        else:
            assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"


def test_start_order_is_gated_on_health(spec: dict[str, Any]) -> None:
    services = spec["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, rule in depends.items():
            expected = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {dependency}"
    for name in ("ingest", "stream", "loader"):
        assert "kafka" in services[name]["depends_on"], name
    assert {"postgres", "minio-init"} <= set(services["loader"]["depends_on"])


def test_required_services_and_images(spec: dict[str, Any]) -> None:
    services = spec["services"]
    expected = {"kafka", "minio", "minio-init", "postgres", "ingest", "stream", "loader"}
    assert expected | {"prometheus", "alertmanager", "grafana"} <= set(services)
    assert "apache/kafka" in services["kafka"]["image"]
    assert "minio/mc" in services["minio-init"]["image"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_stream_is_scalable(spec: dict[str, Any]) -> None:
    stream = spec["services"]["stream"]
    assert "container_name" not in stream
    assert "ports" not in stream


def test_named_volumes_hold_the_data(spec: dict[str, Any]) -> None:
    volumes = set(spec["volumes"])
    for service, path in [
        ("kafka", "/var/lib/kafka/data"),
        ("minio", "/data"),
        ("postgres", "/var/lib/postgresql/data"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ]:
        mounts = [m.split(":") for m in spec["services"][service]["volumes"]]
        assert any(src in volumes and dst == path for src, dst, *_ in mounts), service


def test_kafka_keeps_raw_events_a_week(spec: dict[str, Any]) -> None:
    env = spec["services"]["kafka"]["environment"]
    hours = int(re.sub(r"\$\{\w+:-(\d+)\}", r"\1", str(env["KAFKA_LOG_RETENTION_HOURS"])))
    assert hours >= 168
    # bounded by size as well (a flood must not fill the broker's disk), and the same bound
    # for the topics kafka-init creates (topic configs override the broker default)
    broker_bytes = int(re.sub(r"\$\{\w+:-(\d+)\}", r"\1", str(env["KAFKA_LOG_RETENTION_BYTES"])))
    assert broker_bytes >= 1024**3
    init = spec["services"]["kafka-init"]["environment"]
    assert init["EVENTPIPE_KAFKA_RETENTION_BYTES"] == env["KAFKA_LOG_RETENTION_BYTES"]


def test_topics_are_bounded_by_time_and_bytes() -> None:
    from eventpipe.kafka_admin import topic_specs
    from eventpipe.settings import Settings

    for spec in topic_specs(Settings(kafka_retention_bytes=5 * 1024**3)):
        assert int(spec.topic_configs["retention.ms"]) >= 7 * 24 * 3600 * 1000, spec.name
        assert spec.topic_configs["retention.bytes"] == str(5 * 1024**3), spec.name
    local = (ROOT / "deploy" / "kafka" / "server.properties.in").read_text()
    assert int(re.search(r"^log\.retention\.bytes=(\d+)$", local, re.MULTILINE)[1]) > 0


def test_no_secret_has_a_default() -> None:
    text = COMPOSE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"(:?[-?][^}]*)?\}", text)
        assert uses, name
        assert all(use.startswith(":?") for use in uses), f"{name} must be ${{{name}:?message}}"


def settings_classes() -> list[type]:
    """Every pydantic-settings class in the code (shared settings and each service's own),
    found by reading the sources, so a new subclass cannot be missed."""
    import importlib

    from pydantic_settings import BaseSettings

    packages = {"shared": "eventpipe", "services/ingest": "eventpipe.ingest",
                "services/stream": "eventpipe.stream", "services/loader": "eventpipe.loader"}  # fmt: skip
    found: list[type] = []
    for folder, package in packages.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if not re.search(r"^class \w+\(\w*Settings\):", path.read_text(), re.MULTILINE):
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            module = importlib.import_module(".".join((package, *parts)))
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, BaseSettings):
                    found += [value] if value.__module__ == module.__name__ else []
    return found


def test_env_example_lists_every_setting() -> None:
    classes = settings_classes()
    assert {c.__name__ for c in classes} >= {"Settings", "StreamSettings"}
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    settings = {f"EVENTPIPE_{name.upper()}" for cls in classes for name in cls.model_fields}
    assert settings - listed == set()
    code = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    compose_vars = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", code))
    assert compose_vars - listed == set()
