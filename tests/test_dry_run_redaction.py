"""dry_run shows the command line, but none of the operator's configuration: configured system prompt,
allowed tools, extra_flags values and the executable's path read ``<configured>``; the request's own
values stay."""

from __future__ import annotations

import pytest

SECRET_PROMPT = "internal policy: the billing DB password is hunter2"
SECRET_FLAG = "--mcp-config=/srv/secret/mcp.json"


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_operator_values_are_redacted(make_app, fake_clis, backend):
    flags = [SECRET_FLAG] if backend == "claude" else (["-c", "secret_key=v"] if backend == "codex" else ["--debug"])
    app = make_app(backends={backend: {"system_prompt": SECRET_PROMPT, "extra_flags": flags,
                                       "allowed_tools": "Bash(rm:*)" if backend == "claude" else ""}})
    response = app.test_client().post("/api/v1/prompt", json={"backend": backend, "prompt": "hi", "dry_run": True,
                                                             "model": "my-model"})
    output = response.get_json()["output"]
    assert response.status_code == 200 and output.startswith("Would execute: ")
    for secret in (SECRET_PROMPT, SECRET_FLAG, "secret_key", "Bash(rm:*)", "/tests/fakes/", "--debug"):
        assert secret not in output, (secret, output)
    assert "<configured>" in output
    assert output.split()[2] == backend, "the executable is named, its path is not"
    assert "my-model" in output, "the request's own values stay"
    assert fake_clis.calls() == []


def test_request_system_prompt_stays(make_app, fake_clis):
    client = make_app().test_client()
    body = {"backend": "claude", "prompt": "hi", "dry_run": True, "system_prompt": "be terse"}
    assert "be terse" in client.post("/api/v1/prompt", json=body).get_json()["output"]
