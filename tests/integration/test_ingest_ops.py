"""In production the collector's ops endpoints are served only on its ops port."""

from __future__ import annotations

import httpx

from tests.support.servers import free_port, running_ingest

STRONG_KEY = "wk_" + "a1" * 16


def test_ops_endpoints_only_on_the_ops_port_in_production(topics):
    ops = free_port()
    production = topics.model_copy(
        update={"env": "production", "write_keys": f"{STRONG_KEY}:web", "ingest_ops_port": ops}
    )
    with running_ingest(production) as url:
        internal = url.rsplit(":", 1)[0] + f":{ops}"
        for path in ("/metrics", "/docs", "/openapi.json"):
            public = httpx.get(f"{url}{path}", headers={"Origin": "https://evil.example"})
            assert public.status_code == 404, (path, public.status_code)
            assert httpx.get(f"{internal}{path}").status_code == 200, path
        assert httpx.get(f"{url}/healthz").status_code == 200  # load balancers still probe it
        tracked = httpx.post(f"{url}/v1/track", json={"userId": "u", "event": "e"}, auth=(STRONG_KEY, ""))
        assert tracked.status_code == 200, tracked.text


def test_development_serves_everything_on_one_port(topics):
    with running_ingest(topics) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200
        assert httpx.get(f"{url}/openapi.json").status_code == 200
