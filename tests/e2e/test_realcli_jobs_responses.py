"""Jobs and the OpenAI Responses API with the genuine claude, codex and gemini CLIs against loopback stubs
of their vendor APIs: one job per backend, and a stored response continued with ``previous_response_id``
through the CLI's own resume (the vendor stub sees the earlier turn)."""

from __future__ import annotations

import openai
import pytest

from tests import realcli
from tests.helpers import ndjson, wait_for
from tests.liveserver import LiveServer

pytestmark = pytest.mark.realcli

BACKENDS = ["claude", "codex", "gemini"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_job_runs_the_genuine_cli(realcli_app, backend, tmp_path):
    client = realcli_app.test_client()
    workdir = tmp_path / "work"
    workdir.mkdir()
    submitted = client.post("/api/v1/jobs", json={"backend": backend, "prompt": "job question",
                                                  "workdir": str(workdir)})
    assert submitted.status_code == 202, submitted.json
    job_id = submitted.json["id"]
    state = {}

    def finished():
        state.update(client.get(f"/api/v1/jobs/{job_id}").json)
        return state["status"] not in ("queued", "running")

    assert wait_for(finished, 120), state
    assert state["status"] == "completed", state
    result = state["result"]
    assert result["output"] == "echo: job question" and result["exit_code"] == 0
    assert result["backend_session_id"] and result["token_usage"]["input_tokens"] > 0
    events = ndjson(client.get(f"/api/v1/jobs/{job_id}/events"))
    assert events[-1]["type"] == "done" and events[-1]["content"]["exit_code"] == 0
    assert "".join(e["content"]["text"] for e in events if e["type"] == "message") == "echo: job question"
    session = client.get(f"/api/v1/sessions/{state['session_id']}").json
    assert session["turn_count"] == 1 and session["backend_session_id"] == result["backend_session_id"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_previous_response_id_resumes_the_genuine_cli(realcli_app, stubs, backend):
    with LiveServer(realcli_app) as server:
        client = openai.OpenAI(base_url=f"{server.url}/openai/v1", api_key="not-needed", max_retries=0)
        model = realcli.E2E_MODELS[backend]
        first = client.responses.create(model=model, input="first question")
        assert first.output_text == "echo: first question"
        deltas = []
        with client.responses.stream(model=model, input="second question",
                                     previous_response_id=first.id) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            second = stream.get_final_response()
        assert second.output_text == "".join(deltas) == "echo: second question"
        assert second.previous_response_id == first.id
        # The CLI resumed its own conversation: the vendor API saw the first turn again.
        last = [r for r in stubs[backend].requests if r.get("user_text") == "second question"][-1]
        assert last["n_turns"] >= 3, last
        assert client.responses.retrieve(second.id).output_text == "echo: second question"
        with pytest.raises(openai.BadRequestError):
            client.responses.create(model=model, input="x", previous_response_id="resp_missing")
