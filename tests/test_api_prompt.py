"""POST /api/v1/prompt, sessions, backends, health and the spec, against the fake CLIs."""

from __future__ import annotations

import json
import socket

import pytest

from tests.helpers import alive, ndjson, wait_for, wait_gone
from tests.liveserver import LiveServer

BACKENDS = ["claude", "codex", "gemini"]


@pytest.fixture
def quick_keepalive_app(make_app):
    """An app with a short keep-alive: a stream notices a gone client on its next write."""
    return make_app(server={"keepalive_interval_secs": 0.3})


# -- prompt ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_runs_the_cli_and_stores_a_session(client, fake_clis, backend):
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "hello"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["output"] == "echo: hello" and body["exit_code"] == 0 and "error" not in body
    assert body["token_usage"]["input_tokens"] > 0 and body["duration_ms"] >= 0
    assert len(body["session_id"]) == 32
    call = fake_clis.last()
    assert call["backend"] == backend and call["prompt"] == "hello"
    session = client.get(f"/api/v1/sessions/{body['session_id']}").json
    assert session["backend"] == backend and session["status"] == "completed" and session["turn_count"] == 1
    assert session["backend_session_id"] == body["backend_session_id"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", ["--help", "-p", "it's \"quoted\"\nsecond line\tünïcödé ✓ 日本",
                                    "x" * 300_000], ids=["help", "dash-p", "quotes-unicode", "300kb"])
def test_prompt_reaches_the_cli_intact(client, fake_clis, backend, prompt):
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": prompt, "ephemeral": True})
    assert response.status_code == 200, response.json
    assert fake_clis.last()["prompt"] == prompt
    assert response.json["output"] == "echo: " + prompt


@pytest.mark.parametrize("backend", BACKENDS)
def test_continue_a_session(client, fake_clis, backend):
    first = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "one"}).json
    second = client.post("/api/v1/prompt", json={"session_id": first["session_id"], "prompt": "two"})
    assert second.status_code == 200, second.json
    body = second.json
    assert body["session_id"] == first["session_id"] and body["output"] == "echo: two"
    assert body["backend_session_id"] == first["backend_session_id"]
    assert first["backend_session_id"] in fake_clis.last()["argv"]  # resumed the CLI's own session
    session = client.get(f"/api/v1/sessions/{first['session_id'][:8]}").json
    assert session["turn_count"] == 2
    turns = [first["token_usage"]["input_tokens"], body["token_usage"]["input_tokens"]]
    # codex reports the thread's running total with each turn, so its second turn already holds both.
    expected = turns[1] if backend == "codex" else sum(turns)
    assert session["token_usage"]["input_tokens"] == expected


def test_continue_errors(client, fake_clis):
    first = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "one"}).json
    cases = [
        ({"session_id": "0" * 32, "prompt": "x"}, 404, "body.session_id"),
        ({"session_id": first["session_id"], "backend": "codex", "prompt": "x"}, 400, "body.backend"),
        ({"session_id": first["session_id"], "ephemeral": True, "prompt": "x"}, 400, "body.ephemeral"),
        ({"session_id": "XYZ", "prompt": "x"}, 422, "body.session_id"),
    ]
    for body, status, field in cases:
        response = client.post("/api/v1/prompt", json=body)
        assert response.status_code == status, (body, response.json)
        assert response.json["errors"][0]["field"] == field


@pytest.mark.parametrize("length", [32, 8, 3], ids=["full-id", "prefix", "short-prefix"])
def test_unknown_session_is_404_everywhere(client, fake_clis, length):
    stored = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "one"}).json["session_id"]
    session_id = ("0" if stored[0] != "0" else "1") * length  # never a prefix of the stored one
    for response, field in [(client.get(f"/api/v1/sessions/{session_id}"), "path.id"),
                            (client.delete(f"/api/v1/sessions/{session_id}"), "path.id"),
                            (client.post("/api/v1/prompt", json={"session_id": session_id, "prompt": "x"}),
                             "body.session_id")]:
        assert response.status_code == 404, response.json
        assert response.mimetype == "application/problem+json" and response.json["error"] == "not_found"
        assert response.json["errors"][0]["field"] == field
    assert len(fake_clis.calls()) == 1


def test_ephemeral_stores_nothing_and_asks_the_cli_not_to(client, fake_clis):
    body = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x", "ephemeral": True}).json
    assert "session_id" not in body
    assert "--no-session-persistence" in fake_clis.last()["argv"]
    assert client.get("/api/v1/sessions").json["total"] == 0
    client.post("/api/v1/prompt", json={"backend": "codex", "prompt": "x", "ephemeral": True})
    assert "--ephemeral" in fake_clis.last()["argv"]


def test_dry_run_starts_nothing(client, fake_clis):
    body = client.post("/api/v1/prompt", json={"backend": "codex", "prompt": "x", "dry_run": True}).json
    assert body["output"].startswith("Would execute: ") and "exec --json --skip-git-repo-check" in body["output"]
    assert fake_clis.calls() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_failure_is_reported(client, fake_clis, backend):
    body = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "FAKE_FAIL=401"}).json
    assert body["exit_code"] != 0 and body["error"]
    session = client.get(f"/api/v1/sessions/{body['session_id']}").json
    assert session["status"] == "error" and session["error_message"] == body["error"]


def test_timeout_kills_the_process_group(make_app, fake_clis, monkeypatch):
    monkeypatch.setenv("FAKE_SPAWN_CHILD", "1")
    client = make_app(server={"request_timeout_secs": 1}).test_client()
    body = client.post("/api/v1/prompt", json={"backend": "gemini", "prompt": "FAKE_HANG"}).json
    assert body["exit_code"] == -1 and "timed out after 1 s" in body["error"]
    call = fake_clis.last()
    assert wait_gone(call["pid"], call.get("child_pid"))


def test_sigterm_ignoring_cli_is_killed(make_app, fake_clis, monkeypatch):
    monkeypatch.setenv("FAKE_IGNORE_TERM", "1")
    client = make_app(server={"request_timeout_secs": 1}).test_client()
    body = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_HANG"}).json
    assert body["exit_code"] == -1
    assert wait_gone(fake_clis.last()["pid"])


# -- validation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,status,field", [
    ({"prompt": "x"}, 422, "body.backend"),
    ({"backend": "claude"}, 422, "body.prompt"),
    ({"backend": "claude", "prompt": ""}, 422, "body.prompt"),
    ({"backend": "claude", "prompt": 5}, 422, "body.prompt"),
    ({"backend": "claude", "prompt": "x", "ephemeral": "yes"}, 422, "body.ephemeral"),
    ({"backend": "claude", "prompt": "x", "max_turns": 1.5}, 422, "body.max_turns"),
    ({"backend": "claude", "prompt": "x", "extra": "--verbose"}, 422, "body.extra"),
    ({"backend": "claude", "prompt": "x", "metadata": {"a": 1}}, 422, "body.metadata"),
    ({"backend": "claude", "prompt": "x", "approval_mode": "sometimes"}, 422, "body.approval_mode"),
    ({"backend": "claude", "prompt": "x", "promtp": "typo"}, 422, "body.promtp"),
    ({"backend": "nope", "prompt": "x"}, 400, "body.backend"),
    ({"backend": "claude", "prompt": "x", "workdir": "relative/dir"}, 400, "body.workdir"),
    ({"backend": "claude", "prompt": "x", "workdir": "/does/not/exist"}, 400, "body.workdir"),
    ({"backend": "claude", "prompt": "x", "workdir": "/etc"}, 400, "body.workdir"),
    ({"backend": "claude", "prompt": "x", "extra": ["--dangerously-skip-permissions"]}, 400, "body.extra[0]"),
    ({"backend": "claude", "prompt": "x", "approval_mode": "none"}, 400, "body.approval_mode"),
    ({"backend": "codex", "prompt": "x", "sandbox_mode": "full"}, 400, "body.sandbox_mode"),
])
def test_bad_input_is_a_4xx_naming_the_field_and_runs_nothing(client, fake_clis, body, status, field):
    response = client.post("/api/v1/prompt", json=body)
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["error"] and problem["message"] and problem["status"] == status
    assert problem["errors"][0]["field"].startswith(field)
    assert fake_clis.calls() == []


@pytest.mark.parametrize("data,content_type,status", [
    ("{not json", "application/json", 400),
    ("[1, 2]", "application/json", 400),
    ("", "application/json", 400),
    ("backend=claude", "application/x-www-form-urlencoded", 415),
    ("[" * 100_000 + "]" * 100_000, "application/json", 400),
])
def test_malformed_bodies(client, fake_clis, data, content_type, status):
    response = client.post("/api/v1/prompt", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.json["errors"][0]["field"].startswith(("body", "header"))


def test_symlink_into_blocked_dir_is_refused(client, fake_clis, tmp_path):
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x", "workdir": str(link)})
    assert response.status_code == 400 and response.json["errors"][0]["field"] == "body.workdir"


def test_workdir_is_the_cli_cwd(client, fake_clis, tmp_path):
    client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x", "workdir": str(tmp_path)})
    assert fake_clis.last()["cwd"] == str(tmp_path)


def test_unavailable_backend_is_503(make_app, fake_clis):
    client = make_app(backends={"gemini": {"command": "no-such-gemini-binary"}}).test_client()
    response = client.post("/api/v1/prompt", json={"backend": "gemini", "prompt": "x"})
    assert response.status_code == 503 and "no-such-gemini-binary" in response.json["message"]


def test_full_gate_is_429_with_retry_after(make_app, fake_clis):
    app = make_app(server={"max_concurrent_runs": 1, "max_queued_runs": 0})
    service = app.extensions["clinvk.service"]
    service.gate.acquire()
    try:
        response = app.test_client().post("/api/v1/prompt", json={"backend": "claude", "prompt": "x"})
    finally:
        service.gate.release()
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert fake_clis.calls() == []


# -- streaming ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_ndjson_unified_events(client, fake_clis, backend):
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "FAKE_CHUNKS=3 hi",
                                                   "output_format": "stream-json"})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    assert response.headers["X-Accel-Buffering"] == "no"
    events = ndjson(response)
    assert events[0]["type"] == "init" and events[0]["content"]["backend_session_id"]
    text = "".join(e["content"]["text"] for e in events if e["type"] == "message")
    assert text.replace("\n", "") == "echo: FAKE_CHUNKS=3 hi"
    assert len([e for e in events if e["type"] == "message"]) == 3
    done = events[-1]
    assert done["type"] == "done" and done["content"]["exit_code"] == 0 and done["content"]["token_usage"]
    assert all(e["backend"] == backend and e["session_id"] == events[0]["session_id"] for e in events)
    session = client.get(f"/api/v1/sessions/{events[0]['session_id']}").json
    assert session["status"] == "completed" and session["turn_count"] == 1


def test_stream_keepalive_while_silent(make_app, fake_clis):
    client = make_app(server={"keepalive_interval_secs": 0.2}).test_client()
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_DELAY=1 hi",
                                                   "output_format": "stream-json"})
    kinds = [e["type"] for e in ndjson(response)]
    assert kinds.count("keepalive") >= 2 and kinds[-1] == "done"


def test_stream_failure_ends_with_error_then_done(client, fake_clis):
    response = client.post("/api/v1/prompt", json={"backend": "gemini", "prompt": "FAKE_FAIL=500",
                                                   "output_format": "stream-json"})
    events = ndjson(response)
    assert [e["type"] for e in events][-2:] == ["error", "done"]
    assert events[-1]["content"]["exit_code"] != 0


@pytest.fixture
def live_server(quick_keepalive_app):
    with LiveServer(quick_keepalive_app) as server:
        yield server.server


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_disconnect_kills_the_cli(live_server, fake_clis, monkeypatch, quick_keepalive_app, backend):
    monkeypatch.setenv("FAKE_SPAWN_CHILD", "1")
    body = json.dumps({"backend": backend, "prompt": "FAKE_HANG", "output_format": "stream-json"}).encode()
    with socket.create_connection(("127.0.0.1", live_server.server_port)) as sock:
        sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while b'"init"' not in received:
            received += sock.recv(4096)
        call = fake_clis.last()
        assert alive(call["pid"])  # while the client is still there: once it leaves, the CLI may go at any moment
    # The server notices on its next write: the keep-alive line.
    assert wait_gone(call["pid"], call.get("child_pid"), within=30)
    service = quick_keepalive_app.extensions["clinvk.service"]
    assert wait_for(lambda: service.gate.running == 0, within=10)


# -- backends, sessions, health, spec -------------------------------------------------------------------

def test_backends(client, fake_clis):
    backends = client.get("/api/v1/backends").json["backends"]
    assert [b["name"] for b in backends] == BACKENDS and all(b["available"] for b in backends)


def test_sessions_list_filter_paginate_delete(client, fake_clis):
    ids = [client.post("/api/v1/prompt", json={"backend": b, "prompt": "x"}).json["session_id"]
           for b in ["claude", "codex", "claude", "gemini"]]
    page = client.get("/api/v1/sessions?limit=2&offset=1").json
    assert page["total"] == 4 and page["limit"] == 2 and page["offset"] == 1 and len(page["sessions"]) == 2
    assert [s["id"] for s in page["sessions"]] == ids[::-1][1:3]
    assert client.get("/api/v1/sessions?backend=claude").json["total"] == 2
    assert client.get("/api/v1/sessions?status=error").json["total"] == 0
    bad = client.get("/api/v1/sessions?limit=0")
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "query.limit"
    assert client.get("/api/v1/sessions?colour=red").status_code == 422
    deleted = client.delete(f"/api/v1/sessions/{ids[0]}")
    assert deleted.json == {"deleted": True, "id": ids[0]}
    assert client.get(f"/api/v1/sessions/{ids[0]}").status_code == 404
    assert client.delete(f"/api/v1/sessions/{ids[0]}").status_code == 404


def test_health(make_app, fake_clis):
    body = make_app().test_client().get("/health").json
    assert body["status"] == "ok" and body["uptime_millis"] >= 0 and body["uptime"].endswith("s")
    assert body["session_store"] == {"available": True, "session_count": 0}
    degraded = make_app(backends={"codex": {"enabled": False}}).test_client().get("/health").json
    assert degraded["status"] == "degraded"


def test_request_id_is_echoed_or_made(client, fake_clis):
    assert client.get("/health", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    assert len(client.get("/health").headers["X-Request-Id"]) == 32


def test_unknown_route_and_method(client):
    response = client.get("/api/v1/nothing")
    assert response.status_code == 404 and response.json["error"] == "not_found"
    response = client.get("/api/v1/prompt")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


def test_openapi_document(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/prompt", "/api/v1/backends", "/api/v1/sessions", "/health"} <= set(spec["paths"])
    prompt = spec["paths"]["/api/v1/prompt"]["post"]
    assert prompt["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("PromptRequestSchema")
    assert "session_id" in spec["components"]["schemas"]["PromptRequestSchema"]["properties"]


SHUTDOWN_REFUSED = {  # every operation that starts a CLI run, with a body that would run
    "/api/v1/prompt": {"backend": "claude", "prompt": "hi"},
    "/api/v1/jobs": {"backend": "claude", "prompt": "hi"},  # a job would only fail when it starts
    "/api/v1/parallel": {"tasks": [{"backend": "claude", "prompt": "hi"}]},
    "/api/v1/chain": {"steps": [{"backend": "claude", "prompt": "hi"}]},
    "/api/v1/compare": {"backends": ["claude", "codex"], "prompt": "hi"},
    "/openai/v1/chat/completions": {"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
    "/openai/v1/responses": {"model": "claude", "input": "hi"},
    "/anthropic/v1/messages": {"model": "claude", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]},
}


def test_runs_refused_by_shutdown_are_503_and_the_openapi_document_says_so(client, monkeypatch):
    from clinvk import runner

    paths = client.get("/openapi.json").json["paths"]
    monkeypatch.setattr(runner._LIVE, "closed", "SIGTERM")  # what stop_all does on SIGTERM
    for path, body in SHUTDOWN_REFUSED.items():
        response = client.post(path, json=body)
        assert response.status_code == 503 and response.headers["Retry-After"] == "1", (path, response.json)
        assert "shutting down" in json.dumps(response.json), path
        documented = paths[path]["post"]["responses"]["503"]
        assert "shutting_down" in documented["description"], path
        assert "shutting_down" in documented["headers"]["Retry-After"]["description"], path


def test_stream_closed_before_reading_ends_the_run(quick_keepalive_app, fake_clis, monkeypatch):
    monkeypatch.setenv("FAKE_SPAWN_CHILD", "1")
    response = quick_keepalive_app.test_client().post("/api/v1/prompt", buffered=False, json={
        "backend": "claude", "prompt": "FAKE_HANG", "output_format": "stream-json"})
    assert wait_for(fake_clis.calls, within=10)
    call = fake_clis.last()
    response.close()  # what the WSGI server does when the client is gone before the first byte
    assert wait_gone(call["pid"], call.get("child_pid"))
    assert quick_keepalive_app.extensions["clinvk.service"].gate.running == 0
