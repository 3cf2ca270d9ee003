"""The genuine claude, codex and gemini CLIs driven through clinvk's native API, against loopback
stubs of their vendor APIs: prompt, stream, and session continuation for each backend."""

from __future__ import annotations


import pytest

from tests.helpers import ndjson

pytestmark = pytest.mark.realcli

BACKENDS = ["claude", "codex", "gemini"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_then_continue_the_session(realcli_app, stubs, tmp_path, backend):
    client = realcli_app.test_client()
    workdir = tmp_path / "work"
    workdir.mkdir()
    first = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "first question",
                                                "workdir": str(workdir)})
    assert first.status_code == 200, first.json
    body = first.json
    assert body["exit_code"] == 0 and "error" not in body, body
    assert body["output"] == "echo: first question"
    assert body["token_usage"]["input_tokens"] > 0 and body["backend_session_id"]

    second = client.post("/api/v1/prompt", json={"session_id": body["session_id"], "prompt": "second question"})
    assert second.status_code == 200, second.json
    assert second.json["output"] == "echo: second question", second.json
    assert second.json["backend_session_id"] == body["backend_session_id"]
    # The CLI resumed its own conversation: the vendor API saw the first turn again.
    last = [r for r in stubs[backend].requests if r.get("user_text") == "second question"][-1]
    assert last["n_turns"] >= 3, last
    session = client.get(f"/api/v1/sessions/{body['session_id']}").json
    assert session["turn_count"] == 2 and session["status"] == "completed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream(realcli_app, backend):
    client = realcli_app.test_client()
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "stream this please",
                                                   "output_format": "stream-json", "ephemeral": True})
    assert response.status_code == 200
    events = ndjson(response)
    kinds = [e["type"] for e in events if e["type"] != "keepalive"]
    assert kinds[0] == "init" and kinds[-1] == "done", kinds
    text = "".join(e["content"]["text"] for e in events if e["type"] == "message")
    assert text == "echo: stream this please"
    assert events[-1]["content"]["exit_code"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", ["--help", "/help", "it's \"quoted\"\nline two ünïcödé ✓"])
def test_odd_prompts_reach_the_model_as_text(realcli_app, stubs, backend, prompt):
    body = realcli_app.test_client().post("/api/v1/prompt", json={"backend": backend, "prompt": prompt,
                                                                  "ephemeral": True}).json
    assert body["exit_code"] == 0, body
    # claude gets "/help" as " /help": a leading "/" would make it a slash command.
    assert body["output"].startswith("echo: ") and body["output"][6:].strip() == prompt.strip()


def test_api_error_of_the_vendor_is_reported(realcli_app, stubs):
    client = realcli_app.test_client()
    for backend in BACKENDS:
        stubs[backend].set_mode("401")
        body = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "hi", "ephemeral": True}).json
        assert body["exit_code"] != 0 and body["error"], (backend, body)


def test_ephemeral_gemini_leaves_no_transcript(realcli_app, realcli_config):
    body = realcli_app.test_client().post("/api/v1/prompt", json={"backend": "gemini", "prompt": "x",
                                                                  "ephemeral": True}).json
    assert body["exit_code"] == 0, body
    home = realcli_config["backends"]["gemini"]["env"]["GEMINI_CLI_HOME"]
    from pathlib import Path
    assert not list(Path(home, ".gemini", "tmp").glob("*/chats/session-*"))
