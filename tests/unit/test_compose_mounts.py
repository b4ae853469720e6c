"""docker-compose.yml against the files it mounts and the settings it hands out (static: the
compose stack has never run on an engine here, so everything that can be read is checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_prometheus_has_no_lifecycle_api(spec: dict[str, Any]) -> None:
    assert not any("enable-lifecycle" in str(arg) for arg in spec["services"]["prometheus"]["command"])
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    assert not [line for line in stack.splitlines() if "--web.enable-lifecycle" in line.split("#")[0]]


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(repo path, container path) of every bind mount (``./…:…``) of a service."""
    found = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found.append((ROOT / source, target))
    return found


def mounted(service: dict[str, Any], container_path: str) -> Path | None:
    """The repo file or folder a container path comes from, through the service's bind mounts."""
    for source, target in bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target) :].lstrip("/")
    return None


def test_every_bind_mounted_config_exists(spec: dict[str, Any]) -> None:
    for name, service in spec["services"].items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: {source.relative_to(ROOT)} (mounted at {target}) is missing"


def provisioned_paths(node: Any) -> list[str]:
    """Every ``path:`` (and ``*_PATH``) a Grafana provisioning file names."""
    if isinstance(node, dict):
        own = [v for k, v in node.items() if k.lower() == "path" and isinstance(v, str)]
        return own + [p for v in node.values() for p in provisioned_paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in provisioned_paths(v)]
    return []


def test_every_path_grafana_provisioning_names_is_mounted(spec: dict[str, Any]) -> None:
    grafana = spec["services"]["grafana"]
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    assert provisioning is not None and provisioning.is_dir()
    named = []
    for file in sorted(provisioning.rglob("*.yml")):
        named += provisioned_paths(yaml.safe_load(file.read_text()))
    named.append(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert len(named) >= 2
    for path in named:
        source = mounted(grafana, path)
        assert source is not None, f"{path} is named by Grafana's provisioning but not mounted"
        assert source.exists(), f"{path} -> {source} does not exist"
    dashboards = mounted(
        grafana,
        provisioned_paths(yaml.safe_load(next(provisioning.rglob("dashboards/*.yml")).read_text()))[0],
    )
    assert dashboards is not None and sorted(dashboards.glob("*.json")), "no dashboard would be provisioned"


SECRET_NAMES = ("PASSWORD", "SECRET", "WRITE_KEYS", "DSN", "ACCESS_KEY", "MINIO_ROOT")


def secrets_of(service: dict[str, Any]) -> set[str]:
    env = service.get("environment", {})
    return {name for name in env if any(word in name for word in SECRET_NAMES)}


def test_each_service_gets_only_its_own_secrets(spec: dict[str, Any]) -> None:
    services = spec["services"]
    assert not [name for name, s in services.items() if "env_file" in s], "env_file hands out all of .env"
    assert secrets_of(services["ingest"]) == {"EVENTPIPE_WRITE_KEYS"}  # internet-facing: no DB, no S3
    assert secrets_of(services["stream"]) == {"EVENTPIPE_S3_ACCESS_KEY", "EVENTPIPE_S3_SECRET_KEY"}
    assert secrets_of(services["loader"]) == {
        "EVENTPIPE_S3_ACCESS_KEY",
        "EVENTPIPE_S3_SECRET_KEY",
        "EVENTPIPE_WAREHOUSE_DSN",
    }
    assert secrets_of(services["kafka-init"]) == set()


def test_the_production_guard_accepts_what_each_service_is_given(spec: dict[str, Any]) -> None:
    """Each service's own environment (with strong secrets substituted) passes require_secrets."""
    import re

    from eventpipe.settings import Settings

    strong = {"EVENTPIPE_WRITE_KEYS": "wk_" + "a1" * 16 + ":web", "EVENTPIPE_S3_SECRET_KEY": "s" * 24,
              "EVENTPIPE_S3_ACCESS_KEY": "eventpipe-s3", "POSTGRES_PASSWORD": "p" * 20}  # fmt: skip

    def substitute(value: Any) -> str:  # ${VAR:?msg} -> the strong value, ${VAR:-default} -> default
        pattern = r"\$\{(\w+)(?::?([-?])([^}]*))?\}"
        return re.sub(pattern, lambda m: strong.get(m[1]) or (m[3] if m[2] == "-" else ""), str(value))

    for name in ("ingest", "stream", "loader"):
        env = {k: substitute(v) for k, v in spec["services"][name]["environment"].items()}
        fields = {
            k.removeprefix("EVENTPIPE_").lower(): v for k, v in env.items() if k.startswith("EVENTPIPE_")
        }
        settings = Settings(**fields)
        assert settings.env == "production"
        settings.require_secrets(name)


def test_stop_grace_period_is_above_the_collectors_drain(spec: dict[str, Any]) -> None:
    from eventpipe.ingest.server import GRACEFUL_SHUTDOWN_S
    from eventpipe.settings import Settings

    drain = GRACEFUL_SHUTDOWN_S + 2 * Settings().publish_timeout_s
    for name in ("ingest", "stream", "loader"):
        grace = spec["services"][name].get("stop_grace_period", "10s")
        assert grace.endswith("s") and int(grace[:-1]) > drain, (name, grace, drain)


def test_conditional_put_is_on_where_the_store_honours_it(spec: dict[str, Any]) -> None:
    assert spec["services"]["stream"]["environment"]["EVENTPIPE_S3_CONDITIONAL_PUT"] == "true"
    assert "EVENTPIPE_S3_CONDITIONAL_PUT" in (ROOT / ".env.example").read_text()


def test_prometheus_scrapes_the_collectors_ops_port_which_is_not_published(spec: dict[str, Any]) -> None:
    from eventpipe.settings import Settings

    ops = Settings().ingest_ops_port
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.docker.yml").read_text())
    ingest_job = next(job for job in scrape["scrape_configs"] if job["job_name"] == "ingest")
    assert ingest_job["static_configs"][0]["targets"] == [f"ingest:{ops}"]
    assert not [p for p in spec["services"]["ingest"].get("ports", []) if str(p).endswith(f":{ops}")]
