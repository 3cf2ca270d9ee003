"""Two real keys against one app: what tenant A owns (jobs, stored Responses, scratch workdirs) stays
out of tenant B's reach on every route that could name it."""

from __future__ import annotations

import os

import pytest

from tests.helpers import wait_for
from tests.test_tenants import ALICE, BOB, auth, run, two_keys  # noqa: F401 (fixture)


def job_of(client, key: str, body: dict) -> dict:
    response = client.post("/api/v1/jobs", json=body, headers=auth(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.json
    assert wait_for(lambda: client.get(f"/api/v1/jobs/{job['id']}", headers=auth(key)).json["status"]
                    in ("completed", "failed"), 30)
    return job


def test_another_tenants_job_is_404_on_every_route(two_keys, fake_clis):
    job = job_of(two_keys, ALICE, {"backend": "claude", "prompt": "alice's job"})
    url = f"/api/v1/jobs/{job['id']}"
    for response in (two_keys.get(url, headers=auth(BOB)),
                     two_keys.get(f"{url}/events", headers=auth(BOB)),
                     two_keys.get(f"{url}/events?after=0&follow=false", headers={**auth(BOB), "Last-Event-ID": "0",
                                                                                 "Accept": "text/event-stream"}),
                     two_keys.delete(url, headers=auth(BOB))):
        assert response.status_code == 404, response.get_data(as_text=True)
        assert "alice" not in response.get_data(as_text=True)
    assert two_keys.get("/api/v1/jobs", headers=auth(BOB)).json["total"] == 0
    mine = two_keys.get(url, headers=auth(ALICE))
    assert mine.status_code == 200 and mine.json["request"]["prompt"] == "alice's job"


def test_a_job_cannot_continue_another_tenants_session(two_keys, fake_clis):
    sid = run(two_keys, ALICE)["session_id"]
    refused = two_keys.post("/api/v1/jobs", json={"session_id": sid, "prompt": "x"}, headers=auth(BOB))
    assert refused.status_code == 404 and refused.json["errors"][0]["field"] == "body.session_id"
    parallel = two_keys.post("/api/v1/jobs", headers=auth(BOB), json={
        "kind": "parallel", "tasks": [{"backend": "claude", "prompt": "x", "session_id": sid}]})
    assert parallel.status_code in (400, 404, 422), parallel.get_data(as_text=True)
    assert len(fake_clis.calls()) == 1


def test_another_tenants_response_cannot_be_read_continued_or_deleted(two_keys, fake_clis):
    created = two_keys.post("/openai/v1/responses", json={"model": "claude", "input": "alice's"}, headers=auth(ALICE))
    assert created.status_code == 200, created.json
    rid = created.json["id"]
    assert two_keys.get(f"/openai/v1/responses/{rid}", headers=auth(BOB)).status_code == 404
    assert two_keys.delete(f"/openai/v1/responses/{rid}", headers=auth(BOB)).status_code == 404
    stolen = two_keys.post("/openai/v1/responses", headers=auth(BOB),
                           json={"model": "claude", "input": "steal", "previous_response_id": rid})
    assert stolen.status_code == 400 and stolen.json["error"]["code"] == "previous_response_not_found"
    assert len(fake_clis.calls()) == 1
    assert two_keys.get(f"/openai/v1/responses/{rid}", headers=auth(ALICE)).status_code == 200
    # the response's session is alice's too
    assert two_keys.get("/api/v1/sessions", headers=auth(BOB)).json["total"] == 0


def test_another_tenants_scratch_workdir_is_refused_everywhere(two_keys, fake_clis, tmp_path):
    session = two_keys.get(f"/api/v1/sessions/{run(two_keys, ALICE)['session_id']}", headers=auth(ALICE)).json
    scratch = session["working_dir"]
    assert scratch and os.path.isdir(scratch)
    link = tmp_path / "innocent"
    link.symlink_to(scratch)
    calls = len(fake_clis.calls())
    for workdir in (scratch, str(link), os.path.join(scratch, "..", os.path.basename(scratch))):
        prompt = two_keys.post("/api/v1/prompt", headers=auth(BOB),
                               json={"backend": "claude", "prompt": "x", "workdir": workdir})
        assert prompt.status_code == 400 and prompt.json["errors"][0]["field"] == "body.workdir", prompt.json
        chain = two_keys.post("/api/v1/chain", headers=auth(BOB), json={
            "steps": [{"backend": "claude", "prompt": "x", "workdir": workdir}]})
        assert chain.status_code in (400, 422), chain.json
        compare = two_keys.post("/api/v1/compare", headers=auth(BOB), json={
            "prompt": "x", "backends": ["claude"], "workdir": workdir})
        assert compare.status_code in (400, 422), compare.json
    assert len(fake_clis.calls()) == calls



@pytest.mark.parametrize("target", ["bob", "state"])
def test_a_continued_session_rechecks_its_workdir(make_config, fake_clis, tmp_path, clinvk_home, target):
    """A session's workdir that became a symlink since its first turn (to another tenant's directory, or
    clinvk's state directory) is refused like a new run's; the next turn must not run there."""
    from clinvk.server import create_app
    alice_root, bob_root = tmp_path / "alice", tmp_path / "bob"
    (alice_root / "proj").mkdir(parents=True), bob_root.mkdir()
    client = create_app(make_config(server={"api_keys": [f"alice:{ALICE}", f"bob:{BOB}"]}, tenants={
        "alice": {"allowed_workdir_prefixes": [str(alice_root)]},
        "bob": {"allowed_workdir_prefixes": [str(bob_root)]}})).test_client()
    workdir = alice_root / "proj"
    sid = run(client, ALICE, workdir=str(workdir))["session_id"]
    workdir.rmdir()  # e.g. by another of alice's sessions whose workdir is alice_root
    workdir.symlink_to(bob_root if target == "bob" else clinvk_home)
    calls = len(fake_clis.calls())
    again = client.post("/api/v1/prompt", json={"session_id": sid, "prompt": "x"}, headers=auth(ALICE))
    assert again.status_code == 400 and again.json["errors"][0]["field"] == "body.workdir", again.json
    assert len(fake_clis.calls()) == calls
