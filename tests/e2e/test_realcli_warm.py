"""The warm pool with the genuine claude and codex: a pooled run gives the reply and usage of a cold
one (same stub, same prompt), and the stub saw the same request."""

from __future__ import annotations

import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.realcli


def ask(client, backend, workdir):
    body = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "say hello", "ephemeral": True,
                                               "workdir": str(workdir)}).json
    assert body["exit_code"] == 0 and "error" not in body, body
    return body["output"], body["token_usage"], body["model"]


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_pooled_reply_and_usage_equal_cold(make_app, realcli_config, stubs, tmp_path, backend):
    workdir = tmp_path / "work"
    workdir.mkdir()
    cold_app = make_app(**{**realcli_config, "run": {**realcli_config["run"], "warm_pool": {"enabled": False}}})
    cold = ask(cold_app.test_client(), backend, workdir)
    app = make_app(**realcli_config)
    client = app.test_client()
    first = ask(client, backend, workdir)  # a miss: cold, and the pool starts a process for this launch
    pool = app.extensions["clinvk.service"].warm_pool
    assert wait_for(lambda: pool.idle() == 1, 60)
    pooled = ask(client, backend, workdir)
    assert pool.counts["hit"] == 1
    assert pooled == first == cold and pooled[0] == "echo: say hello"
    requests = [r for r in stubs[backend].requests if r.get("user_text") == "say hello"]
    assert len(requests) == 3 and len({r.get("n_turns") for r in requests}) == 1
