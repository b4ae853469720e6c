"""Each service's warehouse sessions run in their own Redshift query group, and the WLM
configuration in deploy/ maps every group to a queue (issue 17)."""

from __future__ import annotations

from pathlib import Path

import orjson

from eventpipe.loader.dialects import QUERY_GROUPS, get_dialect, query_group_of
from tests.support.dialect_sql import render

WLM = Path(__file__).resolve().parents[2] / "deploy" / "redshift" / "wlm.json"


def test_application_names_map_to_their_service_group():
    assert query_group_of("eventpipe-loader") == "loader"
    for name in ("eventpipe-reprocess", "eventpipe-reprocess-lock", "eventpipe-reprocess-scheduler"):
        assert query_group_of(name) == "nightly", name
    assert query_group_of("eventpipe-verify") == "reports"
    assert query_group_of("eventpipe-reports") == "reports"


def test_redshift_sets_the_query_group_and_postgres_sets_nothing():
    redshift = get_dialect("redshift")
    assert [render(s) for s in redshift.session_setup("nightly")] == ["SET query_group TO 'nightly'"]
    assert get_dialect("postgres").session_setup("nightly") == []


def test_the_wlm_configuration_has_one_queue_per_group_and_a_default_last():
    queues = orjson.loads(WLM.read_bytes())
    manual = [q for q in queues if not q.get("short_query_queue")]
    routed = [g for q in manual for g in q.get("query_group", [])]
    assert sorted(routed) == sorted(QUERY_GROUPS)  # each group once, no stray group
    assert not manual[-1].get("query_group")  # the default queue: last, routes nothing
    assert sum(q["memory_percent_to_use"] for q in manual) == 100
    assert all(q["query_concurrency"] >= 1 for q in manual)
