"""Parallel, chain and compare through the server with the genuine claude, codex and gemini CLIs.

Each CLI talks to its loopback stub (``tests/stubs``) in ``echo`` mode, configured through clinvk's
own config (``backends.<name>.command``, ``.env``, ``.model``), exactly as an operator would. They
fail (never skip) when a CLI is missing: run ``scripts/install-clis.sh``.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.realcli


@pytest.fixture
def client(realcli_app):
    """A clinvk app whose three backends are the real CLIs, each offline against its echo stub."""
    return realcli_app.test_client()


def user_texts(stub, backend):
    requests = [r for r in stub.requests if backend != "gemini" or r.get("method") == "streamGenerateContent"]
    return [r.get("user_text") for r in requests]


def test_parallel_three_real_clis(client, stubs):
    tasks = [{"backend": "claude", "prompt": "alpha"}, {"backend": "codex", "prompt": "beta"},
             {"backend": "gemini", "prompt": "gamma"}]
    response = client.post("/api/v1/parallel", json={"tasks": tasks, "max_parallel": 3})
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["completed"], body["failed"]) == (3, 0), body
    assert [r["backend"] for r in body["results"]] == ["claude", "codex", "gemini"]
    assert [r["output"] for r in body["results"]] == ["echo: alpha", "echo: beta", "echo: gamma"], body
    for task in tasks:
        assert task["prompt"] in user_texts(stubs[task["backend"]], task["backend"])
    assert client.get("/api/v1/sessions").json["total"] == 0


def test_chain_claude_then_codex(client, stubs):
    steps = [{"name": "draft", "backend": "claude", "prompt": "first step"},
             {"name": "review", "backend": "codex", "prompt": "review this: {{previous}}"}]
    response = client.post("/api/v1/chain", json={"steps": steps, "stop_on_failure": True})
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["completed_steps"], body["failed_step"]) == (2, 0), body
    assert body["results"][0]["output"] == "echo: first step"
    assert body["results"][1]["output"] == "echo: review this: echo: first step"
    assert user_texts(stubs["codex"], "codex")[-1] == "review this: echo: first step"


def test_compare_three_real_clis(client):
    response = client.post("/api/v1/compare", json={"prompt": "same question",
                                                    "backends": ["gemini", "claude", "codex"]})
    assert response.status_code == 200, response.json
    body = response.json
    assert [r["backend"] for r in body["results"]] == ["gemini", "claude", "codex"]
    assert [r["output"] for r in body["results"]] == ["echo: same question"] * 3, body
    assert body["completed"] == 3


def test_compare_stream_three_real_clis(client):
    response = client.post("/api/v1/compare", json={"prompt": "streamed", "backends": ["claude", "codex", "gemini"],
                                                    "output_format": "stream-json"})
    assert response.status_code == 200
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line.strip()]
    assert events[-1]["type"] == "done" and events[-1]["content"]["completed"] == 3, events[-1]
    for task, backend in enumerate(("claude", "codex", "gemini")):
        mine = [e for e in events if e.get("task") == task]
        assert {e["backend"] for e in mine} == {backend}
        assert mine[-1]["type"] == "done" and mine[-1]["content"]["exit_code"] == 0, mine
        messages = [e["content"] for e in mine if e["type"] == "message"]
        partial = "".join(m["text"] for m in messages if m.get("is_partial"))
        assert (partial or "".join(m["text"] for m in messages)) == "echo: streamed", mine
