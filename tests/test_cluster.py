"""Three clinvk hosts behind nginx on one PostgreSQL and one Redis (tests/cluster.py): any host
lists, shows and continues any session; limits count once for all hosts."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from clinvk.config import load_config
from clinvk.sessions.postgresql import PostgresSessionStore
from tests.cluster import ROOT, Cluster, several_hosts_upstream
from tests.helpers import wait_for
from tests.services import postgres_db, postgres_server, redis_service  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gunicorn


def test_several_hosts_upstream_is_least_conn_over_every_host():
    text = several_hosts_upstream([1001, 1002, 1003])
    assert "least_conn;" in text
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("server ")] == [
        "server 127.0.0.1:1001;", "server 127.0.0.1:1002;", "server 127.0.0.1:1003;"]


def test_several_hosts_environment_file_sets_real_settings(tmp_path):
    text = (ROOT / "deploy" / "several-hosts" / "clinvk.env").read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    config = load_config(env={**env, "CLINVK_HOME": str(tmp_path)})
    assert config.session.store.startswith("postgresql://") and config.session.turn_lease_secs == 30
    assert config.server.rate_limit_enabled and config.server.rate_limit_storage_uri.startswith("redis://")
    assert config.server.trusted_proxies == ["10.0.0.10"]


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


HANG = "FAKE_HANG"


def start_turn(host, body: dict) -> http.client.HTTPConnection:
    """A turn left running (the answer is not read yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=120)
    conn.request("POST", "/api/v1/prompt", json.dumps(body), {"Content-Type": "application/json"})
    return conn


def cli_started(fake_clis, tag: str):
    return next((c for c in fake_clis.calls() if tag in (c.get("prompt") or "")), None)


def test_two_turns_of_one_session_through_two_hosts_one_runs_one_is_409(
        fake_clis, postgres_db, redis_service, tmp_path):
    with Cluster(tmp_path, postgres_db, redis_service, nginx=False) as cluster:
        one, two, three = cluster.hosts
        sid = one.post("/api/v1/prompt", {"backend": "codex", "prompt": "one"}).json()["session_id"]
        tag = secrets.token_hex(8)
        running = start_turn(two, {"session_id": sid, "prompt": f"{HANG} {tag}", "output_format": "stream-json"})
        assert running.getresponse().status == 200
        assert wait_for(lambda: cli_started(fake_clis, tag), within=60)
        for host in (one, three):
            refused = host.post("/api/v1/prompt", {"session_id": sid, "prompt": "at the same time"})
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "session_busy" and int(refused.headers["Retry-After"]) >= 1
        assert not any("at the same time" in (c.get("prompt") or "") for c in fake_clis.calls())
        running.close()  # the client leaves: host 2 ends its turn and gives the lease back
        assert wait_for(lambda: three.post("/api/v1/prompt", {"session_id": sid, "prompt": "after"}).status_code
                        == 200, within=60)


def test_a_host_killed_during_a_turn_blocks_its_session_until_the_lease_expires(
        fake_clis, postgres_db, redis_service, tmp_path):
    ttl = 8
    config = {"session": {"turn_lease_secs": ttl}}
    with Cluster(tmp_path, postgres_db, redis_service, config=config, nginx=False) as cluster:
        one, two, three = cluster.hosts
        first = one.post("/api/v1/prompt", {"backend": "claude", "prompt": "one"}).json()
        sid = first["session_id"]
        tag = secrets.token_hex(8)
        running = start_turn(one, {"session_id": sid, "prompt": f"{HANG} {tag}"})  # kept open
        assert wait_for(lambda: cli_started(fake_clis, tag), within=60)
        cli = cli_started(fake_clis, tag)
        for pid in (one.proc.pid, cli["ppid"], cli["pid"]):  # the whole host: master, worker, CLI
            os.kill(pid, signal.SIGKILL)
        one.proc.wait(30)
        running.close()
        store = PostgresSessionStore(postgres_db)
        try:
            with store._connection() as conn:
                lease = conn.execute("SELECT holder, extract(epoch FROM expires_at)::float8 AS expires_at"
                                     " FROM session_turns WHERE session_id = %s", (sid,)).fetchone()
            assert lease["holder"].startswith("clinvk-host1:"), lease  # another host's: only expiry frees it
            early = two.post("/api/v1/prompt", {"session_id": sid, "prompt": "too early"})
            if time.time() < lease["expires_at"] - 1:  # answered well before the expiry (ttl leaves ample room)
                assert early.status_code == 409, early.text
            assert wait_for(lambda: three.post("/api/v1/prompt", {"session_id": sid, "prompt": "three"}).status_code
                            == 200, within=ttl * 4, step=0.5)
            session = store.get(sid)
        finally:
            store.close()
        # Nothing lost but the aborted turn: turn one and the turn after it are recorded, the CLI's
        # own conversation went on (the same backend session resumed).
        assert session.turn_count == 2 + (early.status_code == 200) and session.status == "completed"
        assert session.backend_session_id == first["backend_session_id"]
        resumed = [c for c in fake_clis.calls() if c.get("prompt") == "three"]
        assert resumed and first["backend_session_id"] in resumed[-1]["argv"]


def test_a_tenants_run_quota_holds_across_hosts_and_a_dead_hosts_slot_comes_back(
        fake_clis, postgres_db, redis_service, tmp_path):
    name, key, lease = "q" + secrets.token_hex(4), "k" + secrets.token_hex(16), 5
    config = {"server": {"max_queued_runs": 0, "quota_lease_secs": lease},
              "tenants": {name: {"max_concurrent_runs": 2}}}
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    with Cluster(tmp_path, postgres_db, redis_service, config=config, env={"CLINVK_API_KEYS": f"{name}:{key}"},
                 nginx=False) as cluster:
        one, two, three = cluster.hosts
        tags = [secrets.token_hex(8) for _ in range(2)]
        running = []
        for host, tag in zip((one, two), tags):  # one run on each of two hosts: the tenant's two slots
            conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=120)
            conn.request("POST", "/api/v1/prompt", json.dumps({"backend": "claude", "prompt": f"{HANG} {tag}"}),
                         headers)
            running.append(conn)
        assert wait_for(lambda: all(cli_started(fake_clis, t) for t in tags), within=60)
        refused = three.post("/api/v1/prompt", {"backend": "claude", "prompt": "third"}, headers={"X-Api-Key": key})
        assert refused.status_code == 429, refused.text  # host three has slots of its own; the tenant has none
        assert f"(tenants.{name}.max_concurrent_runs)" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1

        cli = cli_started(fake_clis, tags[0])
        for pid in (one.proc.pid, cli["ppid"], cli["pid"]):  # host one dies with its run: no release
            os.kill(pid, signal.SIGKILL)
        one.proc.wait(30)
        running[0].close()
        # Its slot's lease runs out, then the tenant may run again.
        assert wait_for(lambda: three.post("/api/v1/prompt", {"backend": "claude", "prompt": "after"},
                                           headers={"X-Api-Key": key}).status_code == 200,
                        within=lease * 6, step=0.5)
        running[1].close()
