"""eventpipe.devstack's pure parts: every port from the settings (one place), loopback only,
the stack's own directory, and Prometheus scraping the stack's own ports."""

from __future__ import annotations

import base64
import http.server
import re
import threading
from pathlib import Path

import pytest
import yaml

from eventpipe.devstack.kafka import cluster_nodes, random_cluster_id
from eventpipe.devstack.layout import ROOT, Layout, StackSettings, port_of
from eventpipe.devstack.manager import Stack
from eventpipe.devstack.parts import Prometheus, Service
from eventpipe.settings import Settings

SECOND = {
    "kafka_bootstrap": "127.0.0.1:19092",
    "s3_endpoint": "http://127.0.0.1:19000",
    "warehouse_dsn": "postgresql://eventpipe:eventpipe@127.0.0.1:15432/eventpipe",
    "ingest_port": 18080,
    "stream_web_port": 16066,
    "loader_port": 18082,
}


def test_the_defaults_are_the_design_ports() -> None:
    layout = Layout(Settings(), StackSettings())
    assert layout.ports() == {
        "kafka": 9092, "kafka controller": 9093, "postgres": 5432, "s3": 9000,
        "prometheus": 9090, "ingest": 8080, "stream": 6066, "loader": 8082,
    }  # fmt: skip
    assert layout.local == (ROOT / ".local").resolve()


def test_a_second_stack_takes_every_port_and_its_dir_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECOND.items():
        monkeypatch.setenv(f"EVENTPIPE_{name.upper()}", str(value))
    monkeypatch.setenv("EVENTPIPE_STACK_PROMETHEUS_PORT", "19090")
    monkeypatch.setenv("EVENTPIPE_STACK_KAFKA_CONTROLLER_PORT", "19093")
    monkeypatch.setenv("EVENTPIPE_STACK_DIR", str(tmp_path / "second"))
    layout = Layout.load()
    assert layout.ports() == {
        "kafka": 19092, "kafka controller": 19093, "postgres": 15432, "s3": 19000,
        "prometheus": 19090, "ingest": 18080, "stream": 16066, "loader": 18082,
    }  # fmt: skip
    assert layout.local == tmp_path / "second"
    assert layout.pid_file("stream") == tmp_path / "second" / "run" / "stream.pid"
    assert layout.installs == ROOT / ".local"  # the downloaded tools stay the checkout's


def test_the_older_local_dir_variable_still_names_the_stack_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EVENTPIPE_LOCAL_DIR", str(tmp_path))
    assert Layout.load().local == tmp_path


def test_ports_of_dsns_urls_and_bootstraps() -> None:
    assert port_of("postgresql://u:p@127.0.0.1:15432/db", 5432) == 15432
    assert port_of("postgresql://u:p@localhost/db", 5432) == 5432
    assert port_of("//127.0.0.1:19092", 9092) == 19092
    assert port_of("http://127.0.0.1:19000", 9000) == 19000


def test_a_remote_address_is_refused_without_showing_the_password() -> None:
    with pytest.raises(ValueError, match="loopback only") as refused:
        port_of("postgresql://eventpipe:s3cret-pass@db.example.com:5432/eventpipe", 5432)
    assert "s3cret-pass" not in str(refused.value)


def test_prometheus_scrapes_the_stacks_own_ports_with_the_projects_rules(tmp_path: Path) -> None:
    prometheus = Prometheus(
        tmp_path / "prometheus", 19090, {"ingest": 18080, "stream": 16066, "loader": 18082}
    )
    prometheus.prepare()
    config = yaml.safe_load(prometheus.conf.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "ingest": ["127.0.0.1:18080"], "stream": ["127.0.0.1:16066"],
        "loader": ["127.0.0.1:18082"], "prometheus": ["127.0.0.1:19090"],
    }  # fmt: skip
    rules = [Path(pattern) for pattern in config["rule_files"]]
    assert rules and all(p.is_absolute() and list(p.parent.glob(p.name)) for p in rules)
    source = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["global"] == source["global"]  # only the addresses moved
    assert "--web.enable-lifecycle" not in " ".join(prometheus.command())


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_one_node_is_its_own_quorum_and_keeps_kafkas_topics_unreplicated(tmp_path: Path) -> None:
    (node,) = cluster_nodes(tmp_path / "kafka", 9092, 9093, tmp_path / "libs", 1, "")
    text = node.properties(tmp_path / "data")
    assert not re.search(r"@[A-Z_]+@", text)  # every placeholder of the template filled in
    conf = properties(text)
    assert conf["node.id"] == "1" and conf["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert conf["offsets.topic.replication.factor"] == "1"
    assert conf["transaction.state.log.min.isr"] == "1"


def test_three_nodes_form_one_quorum_on_distinct_ports_and_replicate_kafkas_topics(tmp_path: Path) -> None:
    nodes = cluster_nodes(tmp_path / "kafka", 19092, 19093, tmp_path / "libs", 3, "cluster-id")
    confs = [properties(node.properties(node.home / "data")) for node in nodes]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19193,3@127.0.0.1:19293"
    assert [c["node.id"] for c in confs] == ["1", "2", "3"]
    assert {c["controller.quorum.voters"] for c in confs} == {voters}
    assert [c["advertised.listeners"] for c in confs] == [
        "PLAINTEXT://127.0.0.1:19092", "PLAINTEXT://127.0.0.1:19192", "PLAINTEXT://127.0.0.1:19292",
    ]  # fmt: skip
    assert len({c["log.dirs"] for c in confs}) == 3  # a data directory each
    assert [node.home.name for node in nodes] == ["kafka", "kafka-2", "kafka-3"]
    assert {c["offsets.topic.replication.factor"] for c in confs} == {"3"}
    assert {c["transaction.state.log.min.isr"] for c in confs} == {"2"}
    assert {node.cluster_id for node in nodes} == {"cluster-id"}  # formatted as one cluster


def test_kafka_brokers_name_the_nodes_and_their_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTPIPE_STACK_KAFKA_BROKERS", "3")
    layout = Layout.load()
    assert layout.brokers() == ["kafka", "kafka-2", "kafka-3"]
    assert layout.components()[:4] == ["kafka", "kafka-2", "kafka-3", "postgres"]
    ports = layout.ports()
    assert (ports["kafka-2"], ports["kafka-3 controller"]) == (9192, 9293)
    assert len(set(ports.values())) == len(ports)  # nothing listens twice on one port


def test_a_cluster_id_never_starts_with_a_dash_which_kafkas_format_tool_takes_for_an_option() -> None:
    # 1 plain url-safe base64 UUID in 64 starts with "-": 5,000 draws would show ~78 of them
    ids = [random_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_broker_runs_with_kafkas_own_gc_pause_goal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # G1's default goal (200 ms) let the broker stop for 50-110 ms under load: every acks=all
    # publish waited (issue 16); Kafka's start script asks for 20 ms, and so does the stack
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / ".complete").touch()
    monkeypatch.setattr("eventpipe.devstack.kafka.shutil.which", lambda _: "/usr/bin/java")
    (node,) = cluster_nodes(tmp_path / "kafka", 9092, 9093, libs, 1, "")
    command = node.command()
    flags = command[: command.index("kafka.Kafka")]
    assert "-XX:+UseG1GC" in flags and "-XX:MaxGCPauseMillis=20" in flags
    assert not [f for f in flags if f.startswith("-XX:MaxGCPauseMillis=") and f != "-XX:MaxGCPauseMillis=20"]


def test_the_loader_is_up_only_once_its_metrics_say_the_warehouse_answered(tmp_path: Path) -> None:
    """`make up` and `make demo` waited on /metrics alone, which the loader serves before its
    migrations: a demo query could then meet a missing table (the e2e harness's old race)."""
    bodies = {"/metrics": b"eventpipe_loader_warehouse_up 0.0\n"}

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        stack = Stack(Layout(Settings(loader_port=server.server_address[1]), StackSettings(), tmp_path))
        loader = stack.part("loader")
        assert isinstance(loader, Service) and loader.health_url == url
        assert not loader.healthy()
        bodies["/metrics"] = b"eventpipe_loader_warehouse_up 1.0\n"
        assert loader.healthy()
    finally:
        server.shutdown()
        server.server_close()
