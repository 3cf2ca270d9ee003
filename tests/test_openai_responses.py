"""The OpenAI Responses API (/openai/v1/responses), driven by the official ``openai`` SDK with only
``base_url`` changed, against the fake CLIs: create, stream with the SDK's helpers, stored responses
continued through the CLI's own resume, retrieve, delete, and errors as the SDK's exception classes."""

from __future__ import annotations

import json

import openai
import pytest
import requests
from openai import OpenAI

from tests.liveserver import live, make_live, readme_snippet  # noqa: F401 (fixtures)

BACKENDS = ["claude", "codex", "gemini"]
RESUME_FLAG = {"claude": "--resume", "codex": "resume", "gemini": "--resume"}
EPHEMERAL_FLAG = {"claude": "--no-session-persistence", "codex": "--ephemeral"}


def sdk(server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/openai/v1", api_key="not-needed", max_retries=0)


@pytest.fixture
def client(live) -> OpenAI:  # noqa: F811 - the SDK client replaces the Flask test client here
    return sdk(live)


def sse_events(body: str) -> list[tuple[str, dict]]:
    events = []
    for frame in body.split("\n\n"):
        lines = frame.split("\n")
        if frame and not frame.startswith(":"):
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
            events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


@pytest.mark.parametrize("backend", BACKENDS)
def test_create_with_a_string_input(client, fake_clis, backend):
    response = client.responses.create(model=backend, input="Hello!")
    assert response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text == "echo: Hello!"
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert response.store is True and response.previous_response_id is None


def test_item_list_input_and_instructions(client, fake_clis):
    response = client.responses.create(model="claude", instructions="Answer briefly.", input=[
        {"role": "developer", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "input_text", "text": "first"},
                                     {"type": "input_image", "image_url": "https://example.invalid/x.png"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "earlier answer"}]},
        {"role": "user", "content": "second"},
        {"type": "function_call_output", "call_id": "c1", "output": "ignored"},
    ])
    argv = fake_clis.last()["argv"]
    assert argv[argv.index("--system-prompt") + 1] == "Answer briefly.\n\nUse metric units."
    assert response.output_text == "echo: first\n[Previous response: earlier answer]\n\nsecond"
    assert response.instructions == "Answer briefly."


@pytest.mark.parametrize("backend", BACKENDS)
def test_previous_response_id_continues_the_session_through_the_cli_resume(client, fake_clis, backend):
    first = client.responses.create(model=backend, input="remember the word apple")
    second = client.responses.create(model=backend, input="which word?", previous_response_id=first.id)
    assert second.output_text == "echo: which word?" and second.previous_response_id == first.id
    calls = fake_clis.calls()
    assert RESUME_FLAG[backend] in calls[-1]["argv"] and RESUME_FLAG[backend] not in calls[0]["argv"]
    # Without a model the conversation stays on its backend.
    third = client.responses.create(input="and now?", previous_response_id=second.id)
    assert third.output_text == "echo: and now?" and fake_clis.last()["backend"] == backend
    sessions = requests.get(f"{client.base_url}".replace("/openai/v1/", "/api/v1/sessions"), timeout=30).json()
    assert sessions["total"] == 1 and sessions["sessions"][0]["turn_count"] == 3


def test_store_false_is_ephemeral_and_cannot_be_retrieved(client, fake_clis):
    response = client.responses.create(model="claude", input="forget me", store=False)
    assert response.store is False and response.output_text == "echo: forget me"
    assert EPHEMERAL_FLAG["claude"] in fake_clis.last()["argv"]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude", input="x", previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found" and caught.value.param == "previous_response_id"


def test_retrieve_and_delete(client, fake_clis):
    created = client.responses.create(model="gemini", input="keep this", metadata={"topic": "tests"})
    fetched = client.responses.retrieve(created.id)
    assert fetched.model_dump() == created.model_dump()
    assert fetched.metadata == {"topic": "tests"}
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)
    with pytest.raises(openai.BadRequestError):  # a deleted response cannot be continued either
        client.responses.create(model="gemini", input="more", previous_response_id=created.id)


# -- streaming ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_with_the_sdk_helper(client, fake_clis, backend):
    deltas = []
    with client.responses.stream(model=backend, input="stream FAKE_CHUNKS=3") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    whole = client.responses.create(model=backend, input="stream FAKE_CHUNKS=3", store=False).output_text
    assert "".join(deltas) == final.output_text == whole
    assert final.status == "completed" and final.usage.total_tokens > 0
    assert client.responses.retrieve(final.id).output_text == whole  # stored once the stream completed


def test_stream_event_sequence_on_the_wire(live, fake_clis):
    body = requests.post(f"{live.url}/openai/v1/responses", timeout=30, json={
        "model": "claude", "input": "hi FAKE_CHUNKS=2", "stream": True}).text
    events = sse_events(body)
    kinds = [kind for kind, _ in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == kind for kind, data in events)
    assert events[-1][1]["response"]["usage"]["input_tokens"] > 0


def test_stream_iterated_with_create(client, fake_clis):
    events = list(client.responses.create(model="codex", input="hello", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == "echo: hello"


def test_a_run_failing_mid_stream_ends_with_response_failed(client, fake_clis):
    events = list(client.responses.create(model="codex", input="FAKE_FAIL=500", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error.message


# -- errors ---------------------------------------------------------------------------------------------------

def test_errors_are_the_sdks_exception_classes(client, fake_clis):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="no-such-model", input="x")
    assert caught.value.param == "model" and caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude", input=[{"role": "assistant", "content": "only me"}])
    assert caught.value.param == "input"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude", input=[{"role": "wizard", "content": "x"}])
    assert caught.value.param == "input[0].role"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(input="no model")
    assert caught.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model="claude", input="FAKE_FAIL=500")
    assert caught.value.status_code == 502


def test_a_conversation_stays_on_its_backend(client, fake_clis):
    first = client.responses.create(model="claude", input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-5", input="switch", previous_response_id=first.id)
    assert caught.value.param == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude", input="x", previous_response_id=first.id, store=False)
    assert caught.value.param == "store"


def test_responses_belong_to_the_callers_tenant(client, fake_clis, monkeypatch):
    from clinvk.server.openai import responses as views

    mine = client.responses.create(model="claude", input="mine")
    monkeypatch.setattr(views, "tenant", lambda: "someone-else")
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(mine.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="claude", input="steal", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(mine.id)
    monkeypatch.undo()
    assert client.responses.retrieve(mine.id).id == mine.id


def test_openapi_documents_the_responses_endpoints(live, fake_clis):
    paths = requests.get(f"{live.url}/openapi.json", timeout=30).json()["paths"]
    assert set(paths["/openai/v1/responses"]) == {"post"}
    assert set(paths["/openai/v1/responses/{response_id}"]) == {"get", "delete"}


def test_readme_snippet_works(live, fake_clis, capsys):
    code = readme_snippet("OpenAI and Anthropic SDKs", "client.responses.create")
    exec(compile(code.replace("http://127.0.0.1:8080", live.url), "README.rst", "exec"), {})
    out = capsys.readouterr().out
    assert out == "echo: Name a colour.\necho: And another one?\necho: Stream this.\n"
    assert RESUME_FLAG["claude"] in fake_clis.calls()[1]["argv"]
