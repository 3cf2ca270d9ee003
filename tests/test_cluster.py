"""Three clinvk hosts behind nginx on one PostgreSQL and one Redis (tests/cluster.py): any host
lists, shows and continues any session; limits count once for all hosts."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.cluster import Cluster, several_hosts_upstream
from tests.services import postgres_db, postgres_server, redis_service  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gunicorn


def test_several_hosts_upstream_is_least_conn_over_every_host():
    text = several_hosts_upstream([1001, 1002, 1003])
    assert "least_conn;" in text
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("server ")] == [
        "server 127.0.0.1:1001;", "server 127.0.0.1:1002;", "server 127.0.0.1:1003;"]


def test_a_session_made_on_one_host_is_the_same_on_every_host_and_continues_anywhere(
        fake_clis, postgres_db, redis_service, tmp_path):
    with Cluster(tmp_path, postgres_db, redis_service) as cluster:
        one, two, three = cluster.hosts
        first = one.post("/api/v1/prompt", {"backend": "claude", "prompt": "turn one"})
        assert first.status_code == 200, first.text
        session_id = first.json()["session_id"]

        views = [host.get(f"/api/v1/sessions/{session_id}").json() for host in cluster.hosts]
        assert views[0] == views[1] == views[2] and views[0]["turn_count"] == 1
        listings = [host.get("/api/v1/sessions").json() for host in cluster.hosts]
        assert listings[0] == listings[1] == listings[2] and listings[0]["total"] == 1

        for n, host in ((2, two), (3, three)):
            answer = host.post("/api/v1/prompt", {"session_id": session_id, "prompt": f"turn {n}"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["session_id"] == session_id and answer.json()["output"] == f"echo: turn {n}"
        assert one.get(f"/api/v1/sessions/{session_id}").json()["turn_count"] == 3
        resumed = [c for c in fake_clis.calls() if first.json()["backend_session_id"] in c["argv"]]
        assert len(resumed) == 2  # hosts 2 and 3 resumed the CLI's own session

        # Through nginx every host is reached (least_conn, no stickiness) and all agree.
        with ThreadPoolExecutor(6) as pool:
            seen = list(pool.map(lambda _: requests.get(cluster.nginx.url + f"/api/v1/sessions/{session_id}",
                                                        timeout=30), range(12)))
        assert {r.status_code for r in seen} == {200} and all(r.json() == seen[0].json() for r in seen)
        logged = sum(1 for host in cluster.hosts for line in host.request_log()
                     if line.get("route") == "/api/v1/sessions/<session_id>")
        assert logged >= 12 + 3


def test_rate_limit_counts_once_across_hosts(fake_clis, postgres_db, redis_service, tmp_path):
    key = "k" + secrets.token_hex(16)  # the Redis server is shared by the test session: our own key
    config = {"server": {"rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": 6}}
    with Cluster(tmp_path, postgres_db, redis_service, config=config, env={"CLINVK_API_KEYS": key},
                 nginx=False) as cluster:
        statuses = [host.get("/api/v1/backends", headers={"X-Api-Key": key}).status_code
                    for _ in range(4) for host in cluster.hosts]
    # Burst 6 for the key, whichever host answers: counted per host, all 12 would pass.
    assert statuses.count(200) == 6 and statuses.count(429) == 6
