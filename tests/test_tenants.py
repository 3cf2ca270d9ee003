"""Tenants: every key its own sessions, workdirs and quotas; `clinvk keys`."""

from __future__ import annotations

import hashlib
import threading

import pytest
import yaml
from click.testing import CliRunner

from clinvk.apikeys import ApiKeys, key_id
from clinvk.cli import cli
from clinvk.config import ConfigError, load_config
from clinvk.server import create_app
from clinvk.tenants import Tenants, split_key_entry
from tests.helpers import wait_for
from tests.server_process import ServerProcess

ALICE, BOB, ROOT = "sk-alice-key", "sk-bob-key", "sk-admin-key"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def two_keys(make_config, fake_clis):
    """alice and bob from CLINVK_API_KEYS-style entries, root (admin) from a config-file digest."""
    config = make_config(server={"api_keys": [f"alice:{ALICE}", f"bob:{BOB}"]},
                         tenants={"root": {"key_sha256": digest(ROOT), "admin": True}})
    app = create_app(config)
    app.config["TESTING"] = True
    return app.test_client()


def run(client, key, **body):
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", **body}, headers=auth(key))
    assert response.status_code == 200, response.json
    return response.json


# ------------------------------------------------------------------------------- keys and config

def test_key_entries_name_their_tenant():
    assert split_key_entry("alice:sk-1") == ("alice", "sk-1")
    assert split_key_entry("sk-1") == (None, "sk-1")
    assert split_key_entry("Not A Name:sk") == (None, "Not A Name:sk")  # a bare key that holds a colon
    keys = ApiKeys([f"alice:{ALICE}", "bare-key"], digests={"root": digest(ROOT)})
    assert keys.match(ALICE) == "alice" and keys.match(ROOT) == "root"
    assert keys.match("bare-key") == key_id("bare-key")
    assert keys.match(f"alice:{ALICE}") is None  # the name is not part of the key
    assert keys.tenant_names() == {"alice", "root", key_id("bare-key")}


def test_config_file_keys_alone_turn_auth_on(make_config):
    keys = ApiKeys.from_config(make_config(tenants={"ci": {"key_sha256": digest("k")}}))
    assert keys and keys.source == "config file" and keys.match("k") == "ci"


@pytest.mark.parametrize("tenants, message", [
    ({"Alice": {"admin": True}}, "tenants.Alice: a tenant name must be"),
    ({"alice": {"key_sha256": "abc"}}, "tenants.alice.key_sha256: must be a SHA-256 digest"),
    ({"alice": {"key": "plain"}}, "tenants.alice.key: unknown key"),
    ({"alice": {"max_concurrent_runs": -1}}, "tenants.alice.max_concurrent_runs: must be an integer >= 0"),
    ({"alice": {"allowed_workdir_prefixes": ["rel"]}}, r"tenants.alice.allowed_workdir_prefixes\[0\]"),
])
def test_bad_tenant_settings_name_the_key(make_config, tenants, message):
    with pytest.raises(ConfigError, match=message):
        make_config(tenants=tenants)


def test_tenant_settings_from_the_environment(clinvk_home):
    config = load_config(env={"CLINVK_HOME": str(clinvk_home), "CLINVK_TENANTS__CI__MAX_CONCURRENT_RUNS": "3"})
    assert config.tenants["ci"].max_concurrent_runs == 3


def test_default_share_of_the_run_slots(make_config):
    config = make_config(server={"max_concurrent_runs": 8}, tenants={"big": {"max_concurrent_runs": 6}})
    several = Tenants(config, {"a", "b"})
    assert several.get("a").max_concurrent_runs == 4  # half: one key cannot take every slot
    assert several.get("big").max_concurrent_runs == 6
    assert Tenants(config, {"a"}).get("a").max_concurrent_runs == 8  # alone it may use them all
    assert several.get(None).name == "local" and several.get(None).admin


# ----------------------------------------------------------------------------- sessions per tenant

def test_another_tenants_session_is_404_on_every_route(two_keys, fake_clis):
    sid = run(two_keys, ALICE)["session_id"]
    missing = ("0" if sid[0] != "0" else "1") * 32
    for lookup in (sid, sid[:8], missing):
        for response in (two_keys.get(f"/api/v1/sessions/{lookup}", headers=auth(BOB)),
                         two_keys.delete(f"/api/v1/sessions/{lookup}", headers=auth(BOB))):
            assert response.status_code == 404, response.json
            assert response.json["detail"] == f"no session found with id or prefix {lookup!r}"
        cont = two_keys.post("/api/v1/prompt", json={"session_id": lookup, "prompt": "x"}, headers=auth(BOB))
        assert cont.status_code == 404 and cont.json["errors"][0]["field"] == "body.session_id"
        assert cont.json["detail"] == f"no session found with id or prefix {lookup!r}"
    streamed = two_keys.post("/api/v1/prompt", headers=auth(BOB),
                             json={"session_id": sid, "prompt": "x", "output_format": "stream-json"})
    assert streamed.status_code == 404
    listed = two_keys.get("/api/v1/sessions", headers=auth(BOB)).json
    assert listed["total"] == 0 and listed["sessions"] == []
    assert len(fake_clis.calls()) == 1  # bob never ran anything on alice's session
    # alice still has it, untouched
    mine = two_keys.get(f"/api/v1/sessions/{sid[:8]}", headers=auth(ALICE))
    assert mine.status_code == 200 and mine.json["owner"] == "alice" and mine.json["turn_count"] == 1
    again = run(two_keys, ALICE, session_id=sid)
    assert again["session_id"] == sid
    assert two_keys.delete(f"/api/v1/sessions/{sid}", headers=auth(ALICE)).status_code == 200


def test_short_prefixes_find_nothing(two_keys):
    sid = run(two_keys, ALICE)["session_id"]
    for prefix in (sid[:1], sid[:7]):
        response = two_keys.get(f"/api/v1/sessions/{prefix}", headers=auth(ALICE))
        assert response.status_code == 404 and "at least 8 characters" in response.json["detail"]
        cont = two_keys.post("/api/v1/prompt", json={"session_id": prefix, "prompt": "x"}, headers=auth(ALICE))
        assert cont.status_code == 404


def test_prefix_matches_only_the_callers_sessions(two_keys, clinvk_home):
    from clinvk.sessions import open_store
    store = open_store(clinvk_home / "sessions.db")
    conn = store._conn()
    for sid, owner in (("abcdef01" + "0" * 24, "alice"), ("abcdef01" + "1" * 24, "bob")):
        conn.execute("INSERT INTO sessions (id, backend, created_at, last_used, owner) VALUES "
                     "(?, 'claude', '2030-01-01T00:00:00.000000Z', '2030-01-01T00:00:00.000000Z', ?)", (sid, owner))
    # the same prefix names one session for each tenant, and is ambiguous only for the admin
    assert two_keys.get("/api/v1/sessions/abcdef01", headers=auth(ALICE)).json["owner"] == "alice"
    assert two_keys.get("/api/v1/sessions/abcdef01", headers=auth(BOB)).json["owner"] == "bob"
    assert "ambiguous" in two_keys.get("/api/v1/sessions/abcdef01", headers=auth(ROOT)).json["detail"]


def test_admin_sees_every_tenant_with_an_owner_filter(two_keys):
    a, b = run(two_keys, ALICE)["session_id"], run(two_keys, BOB)["session_id"]
    everything = two_keys.get("/api/v1/sessions", headers=auth(ROOT)).json
    assert {s["id"]: s["owner"] for s in everything["sessions"]} == {a: "alice", b: "bob"}
    only_bob = two_keys.get("/api/v1/sessions?owner=bob", headers=auth(ROOT)).json
    assert [s["id"] for s in only_bob["sessions"]] == [b] and only_bob["total"] == 1
    # a tenant's owner filter cannot reach past its own sessions
    assert two_keys.get("/api/v1/sessions?owner=bob", headers=auth(ALICE)).json["total"] == 0
    assert two_keys.get("/api/v1/sessions?owner=alice", headers=auth(ALICE)).json["total"] == 1
    bad = two_keys.get("/api/v1/sessions?owner=Not%20a%20name", headers=auth(ROOT))
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "query.owner"
    assert two_keys.get(f"/api/v1/sessions/{a}", headers=auth(ROOT)).status_code == 200
    assert run(two_keys, ROOT, session_id=b)["session_id"] == b  # an admin may continue any session
    assert two_keys.delete(f"/api/v1/sessions/{b}", headers=auth(ROOT)).status_code == 200
    assert two_keys.get(f"/api/v1/sessions/{b}", headers=auth(BOB)).status_code == 404


def test_without_keys_one_local_tenant_sees_everything(client, fake_clis):
    sid = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"}).json["session_id"]
    session = client.get(f"/api/v1/sessions/{sid}").json
    assert session["owner"] == "local"
    assert client.get("/api/v1/sessions").json["total"] == 1


def test_tenant_workdir_prefixes_narrow_the_servers(make_config, fake_clis, tmp_path):
    inside, outside = tmp_path / "alice-work", tmp_path / "elsewhere"
    inside.mkdir(), outside.mkdir()
    app = create_app(make_config(server={"api_keys": [f"alice:{ALICE}", f"bob:{BOB}"]},
                                 tenants={"alice": {"allowed_workdir_prefixes": [str(inside)]}}))
    client = app.test_client()
    assert run(client, ALICE, workdir=str(inside))["exit_code"] == 0
    refused = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x", "workdir": str(outside)},
                          headers=auth(ALICE))
    assert refused.status_code == 400 and refused.json["errors"][0]["field"] == "body.workdir"
    assert "allowed prefixes of tenant 'alice'" in refused.json["detail"]
    assert run(client, BOB, workdir=str(outside))["exit_code"] == 0


def test_tenant_in_log_line_and_metrics(make_config, fake_clis, caplog):
    app = create_app(make_config(server={"api_keys": [f"alice:{ALICE}"], "metrics_enabled": True}))
    client = app.test_client()
    with caplog.at_level("INFO", logger="clinvk.request"):
        run(client, ALICE)
    assert any("route=/api/v1/prompt" in r.getMessage() and "tenant=alice" in r.getMessage() for r in caplog.records)
    text = client.get("/metrics", headers=auth(ALICE)).get_data(as_text=True)
    assert 'clinvk_cli_runs_total{backend="claude",outcome="success",tenant="alice"} 1.0' in text


# ------------------------------------------------------------------- quotas under several workers

def test_quotas_per_tenant_across_workers(tmp_path, fake_clis):
    config = {"server": {"max_concurrent_runs": 4, "max_queued_runs": 0},
              "tenants": {"alice": {"max_concurrent_runs": 1, "rate_limit_rps": 1, "rate_limit_burst": 3}}}
    env = {"CLINVK_API_KEYS": f"alice:{ALICE},bob:{BOB}"}
    with ServerProcess(tmp_path, config=config, env=env, workers=2) as server:
        slow: dict = {}
        holder = threading.Thread(target=lambda: slow.update(r=server.post(
            "/api/v1/prompt", {"backend": "claude", "prompt": "FAKE_DELAY=6 slow"}, headers=auth(ALICE), fresh=True)))
        holder.start()
        assert wait_for(lambda: any("slow" in c.get("prompt") or "" for c in fake_clis.calls()), within=30)
        # alice's one slot is taken (whichever worker answers); bob's runs go on
        refused = server.post("/api/v1/prompt", {"backend": "claude", "prompt": "x"}, headers=auth(ALICE), fresh=True)
        assert refused.status_code == 429, refused.text
        assert "tenant 'alice' at its limit (tenants.alice.max_concurrent_runs)" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        for _ in range(2):
            ok = server.post("/api/v1/prompt", {"backend": "claude", "prompt": "x"}, headers=auth(BOB), fresh=True)
            assert ok.status_code == 200, ok.text
        holder.join(60)
        assert slow["r"].status_code == 200
        # alice's request rate: 3 per 3 s per worker (memory:// counts per worker), bob has no limit
        statuses = [server.get("/api/v1/sessions", headers=auth(ALICE), fresh=True) for _ in range(12)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited, [r.status_code for r in statuses]
        assert "rate limit exceeded for tenant 'alice'" in limited[0].json()["detail"]
        assert "(tenants.alice.rate_limit_rps)" in limited[0].json()["detail"]
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert all(server.get("/api/v1/sessions", headers=auth(BOB), fresh=True).status_code == 200
                   for _ in range(12))
        log = "\n".join(r.get("tenant", "") for r in server.request_log())
        assert "alice" in log and "bob" in log


# ------------------------------------------------------------------------------------- clinvk keys

def test_keys_commands(tmp_path, monkeypatch, make_config, fake_clis):
    for name in ("CLINVK_API_KEYS", "CLINVK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLINVK_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    added = runner.invoke(cli, ["keys", "add", "ci-bot"])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("ck-") and len(key) > 40
    stored = yaml.safe_load((tmp_path / "home" / "config.yaml").read_text())
    assert stored == {"tenants": {"ci-bot": {"key_sha256": digest(key)}}}  # never the key itself
    assert key not in (tmp_path / "home" / "config.yaml").read_text()
    again = runner.invoke(cli, ["keys", "add", "ci-bot"])
    assert again.exit_code == 2 and "already has a key" in again.stderr
    assert runner.invoke(cli, ["keys", "add", "CI Bot"]).exit_code == 2
    monkeypatch.setenv("CLINVK_API_KEYS", "dev:sk-dev")
    listed = runner.invoke(cli, ["keys", "list", "--json"])
    names = {t["name"]: t["source"] for t in __import__("json").loads(listed.stdout)["tenants"]}
    assert names == {"ci-bot": "config file", "dev": "CLINVK_API_KEYS"}
    assert key not in listed.stdout and "sk-dev" not in listed.stdout
    # the printed key works against a server built from that config
    app = create_app(load_config(env={"CLINVK_HOME": str(tmp_path / "home")}))
    assert app.test_client().get("/api/v1/sessions", headers=auth(key)).status_code == 200
    assert app.test_client().get("/api/v1/sessions", headers=auth("wrong")).status_code == 401
    removed = runner.invoke(cli, ["keys", "remove", "ci-bot"])
    assert removed.exit_code == 0, removed.output
    assert yaml.safe_load((tmp_path / "home" / "config.yaml").read_text()) in ({}, None)
    assert runner.invoke(cli, ["keys", "remove", "ci-bot"]).exit_code == 2
