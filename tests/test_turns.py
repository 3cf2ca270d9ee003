"""One turn at a time per session: a second turn while one runs gets 409 session_busy with
Retry-After, across gunicorn workers; the store records who holds the turn (a lease with an expiry,
renewed while the turn runs), and a turn whose process died does not block its session."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from clinvk.errors import SessionBusy, StoreUnavailable
from clinvk.sessions import SqliteSessionStore
from clinvk.sessions.turns import STORE_UNREACHABLE, TurnLeases, holder_id, holder_is_dead
from tests.helpers import wait_for
from tests.server_process import ServerProcess

HANG = "FAKE_HANG"


# -- the store's lease -------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    store = SqliteSessionStore(tmp_path / "sessions.db")
    yield store
    store.close()


def test_the_store_lease_is_taken_once_renewed_and_released(store):
    sid = store.create(backend="claude").id
    first = store.acquire_turn(sid, "a", 30)
    assert first.holder == "a" and first.expires_at > time.time() + 25
    assert store.acquire_turn(sid, "b", 30).holder == "a", "held: b does not get it"
    assert store.acquire_turn(sid, "a", 30).holder == "a", "the holder may take it again"
    assert store.renew_turn(sid, "a", 60) and not store.renew_turn(sid, "b", 60)
    store.release_turn(sid, "b")  # not b's: nothing happens
    assert store.acquire_turn(sid, "b", 30).holder == "a"
    store.release_turn(sid, "a")
    assert store.acquire_turn(sid, "b", 30).holder == "b"


def test_an_expired_or_dead_holders_lease_is_free(store):
    sid = store.create(backend="claude").id
    assert store.acquire_turn(sid, "a", 0.05).holder == "a"
    assert wait_for(lambda: store.acquire_turn(sid, "b", 30).holder == "b", within=5), "expired: b takes it"
    assert store.acquire_turn(sid, "c", 30).holder == "b"
    assert store.acquire_turn(sid, "c", 30, replacing="b").holder == "c", "b is known to be dead"
    assert not store.renew_turn(sid, "b", 30), "b learns it lost the lease"


def test_the_lease_is_shared_by_processes(store, tmp_path):
    sid = store.create(backend="claude").id
    assert store.acquire_turn(sid, "here", 30).holder == "here"
    code = ("import sys; from clinvk.sessions import SqliteSessionStore as S; "
            f"print(S(sys.argv[1]).acquire_turn({sid!r}, 'there', 30).holder)")
    root = str(Path(__file__).resolve().parents[1])
    other = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "PYTHONPATH": root})
    assert other.stdout.strip() == "here", other.stderr


def test_holder_ids_tell_a_dead_process_on_this_host():
    me = holder_id()
    assert not holder_is_dead(me)
    host, pid, began, token = me.rsplit(":", 3)
    assert holder_is_dead(f"{host}:{pid}:{int(began) + 1}:{token}"), "the pid now names another process"
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert holder_is_dead(f"{host}:{gone.pid}:{began}:{token}")
    assert not holder_is_dead(f"other-host-{host}:{gone.pid}:{began}:{token}"), "another host: wait for expiry"


def test_turn_leases_hold_renew_and_refuse(store):
    sid = store.create(backend="claude").id
    leases = TurnLeases(store, ttl_secs=0.3)
    with leases.hold(sid):
        with pytest.raises(SessionBusy) as busy:
            with TurnLeases(store).hold(sid):
                pass
        assert busy.value.status == 409 and busy.value.code == "session_busy"
        assert int(busy.value.headers["Retry-After"]) > 0
        time.sleep(0.6)  # two TTLs: only the renewal keeps it
        with pytest.raises(SessionBusy):
            with TurnLeases(store).hold(sid):
                pass
    with TurnLeases(store).hold(sid):  # released
        pass


def test_turns_that_cannot_be_renewed_end_before_their_lease_and_a_down_store_is_asked_once_a_round(store):
    """The store stops answering (each ask waits for its connection timeout): every held turn is
    ended before its lease could expire, and one failed ask a round stands for all turns."""
    sids = [store.create(backend="claude").id for _ in range(3)]
    asks = []

    def unreachable(session_id, holder, ttl):
        asks.append(time.monotonic())
        raise StoreUnavailable()

    leases = TurnLeases(store, ttl_secs=0.6)
    with leases.hold(sids[0]) as one, leases.hold(sids[1]) as two, leases.hold(sids[2]) as three:
        store.renew_turn = unreachable
        assert wait_for(lambda: one.lost and two.lost and three.lost, within=10)
        assert {t.reason for t in (one, two, three)} == {STORE_UNREACHABLE}
        rounds = len(asks)
    # The lease of 0.6 s is renewed every 0.2 s: lost after two failed rounds, one ask each.
    assert rounds <= 3, asks


# -- the API ---------------------------------------------------------------------------------------------

def test_second_turn_is_409_session_busy(app, client, fake_clis):
    first = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "one"}).json
    service = app.extensions["clinvk.service"]
    with service.turns.hold(first["session_id"]):  # a turn runs (in this or any other process)
        for body in ({"session_id": first["session_id"], "prompt": "two"},
                     {"session_id": first["session_id"], "prompt": "two", "output_format": "stream-json"}):
            response = client.post("/api/v1/prompt", json=body)
            assert response.status_code == 409, response.data
            assert response.mimetype == "application/problem+json"
            assert response.json["error"] == "session_busy" and response.json["errors"][0]["field"] == "body.session_id"
            assert int(response.headers["Retry-After"]) >= 1
    assert len(fake_clis.calls()) == 1, "no CLI was started for the refused turns"
    again = client.post("/api/v1/prompt", json={"session_id": first["session_id"], "prompt": "three"})
    assert again.status_code == 200 and again.json["output"] == "echo: three"


def test_a_run_whose_lease_is_lost_ends_itself(make_app, fake_clis):
    """A lease that expired (this host stalled, the store was unreachable) and was taken by another turn
    must not be written on any more: the renewal finds it taken and the run ends."""
    app = make_app(session={"turn_lease_secs": 0.3})
    client = app.test_client()
    sid = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "one"}).json["session_id"]
    store = app.extensions["clinvk.service"].store
    tag = uuid.uuid4().hex
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        client.post("/api/v1/prompt", json={"session_id": sid, "prompt": f"{HANG} {tag}"}).json))
    thread.start()
    assert wait_for(lambda: any(tag in (c.get("prompt") or "") for c in fake_clis.calls()), within=30)
    holder = store._conn().execute("SELECT holder FROM session_turns WHERE session_id = ?", (sid,)).fetchone()[0]
    assert store.acquire_turn(sid, "another-host", 60, replacing=holder).holder == "another-host"
    thread.join(60)
    assert not thread.is_alive(), "the hung run was not ended"
    assert "turn lease was lost" in result["error"], result
    assert store.acquire_turn(sid, "third", 60).holder == "another-host", "the loser released nothing of theirs"


def test_openapi_documents_409(client):
    responses = client.get("/openapi.json").json["paths"]["/api/v1/prompt"]["post"]["responses"]
    assert "session_busy" in responses["409"]["description"] and "Retry-After" in responses["409"]["headers"]


def post_raw(server: ServerProcess, body: dict) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/api/v1/prompt", json.dumps(body), {"Content-Type": "application/json"})
    return conn


@pytest.mark.gunicorn
def test_one_turn_at_a_time_across_workers(tmp_path, fake_clis):
    with ServerProcess(tmp_path, workers=2, config={"server": {"request_timeout_secs": 120}}) as server:
        sid = server.post("/api/v1/prompt", {"backend": "codex", "prompt": "one"}).json()["session_id"]
        running = post_raw(server, {"session_id": sid, "prompt": f"{HANG} two", "output_format": "stream-json"})
        assert running.getresponse().status == 200
        refused_by: set[str] = set()

        def both_workers_refused() -> bool:
            response = server.post("/api/v1/prompt", {"session_id": sid, "prompt": "three"}, fresh=True)
            assert response.status_code == 409, response.text
            assert response.json()["error"] == "session_busy" and response.headers["Retry-After"]
            refused_by.add(server.request_log()[-1]["worker"])
            return len(refused_by) == 2

        assert wait_for(both_workers_refused, within=60, step=0), refused_by
        running.close()  # the client leaves: its turn ends
        assert wait_for(lambda: server.post("/api/v1/prompt", {"session_id": sid, "prompt": "four"},
                                            fresh=True).status_code == 200, within=10)


@pytest.mark.gunicorn
def test_a_killed_workers_turn_does_not_block_the_session(tmp_path, fake_clis):
    with ServerProcess(tmp_path, config={"server": {"request_timeout_secs": 120}}) as server:
        sid = server.post("/api/v1/prompt", {"backend": "claude", "prompt": "one"}).json()["session_id"]
        tag = uuid.uuid4().hex
        running = post_raw(server, {"session_id": sid, "prompt": f"{HANG} {tag}"})
        assert wait_for(lambda: any(tag in (c.get("prompt") or "") for c in fake_clis.calls()), within=30)
        worker = fake_clis.last()["ppid"]
        os.kill(worker, signal.SIGKILL)
        running.close()
        assert wait_for(lambda: server.stderr_text().count("Booting worker") == 2, within=30)
        # Long before the lease's 30 s expiry: its holder's process is gone.
        again = server.post("/api/v1/prompt", {"session_id": sid, "prompt": "three"}, fresh=True, timeout=20)
        assert again.status_code == 200, again.text
        assert again.json()["output"] == "echo: three"
