"""The Anthropic-compatible API (/anthropic/v1), driven by the official ``anthropic`` SDK against a real
server on 127.0.0.1 and the fake CLIs: only ``base_url`` changes, streaming included."""

from __future__ import annotations

import json

import anthropic
import pytest
import requests

from tests.helpers import alive, wait_for
from tests.liveserver import live, make_live, readme_snippet  # noqa: F401 (fixtures)

BACKENDS = ["claude", "codex", "gemini"]
EPHEMERAL_FLAG = {"claude": "--no-session-persistence", "codex": "--ephemeral"}
FAIL_TEXT = {"claude": "Invalid API key", "codex": "Incorrect API key", "gemini": "API key not valid"}
EVENT_ORDER = ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
               "message_delta", "message_stop"]


def sdk(server, **kwargs) -> anthropic.Anthropic:
    kwargs.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=f"{server.url}/anthropic", api_key="not-needed", **kwargs)


@pytest.fixture
def client(live) -> anthropic.Anthropic:  # noqa: F811 - the SDK client replaces the Flask test client here
    return sdk(live)


def user(text):
    return [{"role": "user", "content": text}]


def sse_events(body: str) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE event; asserts every event has both lines."""
    events = []
    for frame in body.split("\n\n"):
        if not frame:
            continue
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        name, data = lines[0][len("event: "):], json.loads(lines[1][len("data: "):])
        assert data["type"] == name
        events.append((name, data))
    return events


def collapse(names: list[str]) -> list[str]:
    """Event names with repeats folded: [a, b, b, c] → [a, b, c]."""
    return [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]


# -- the seed docs' snippets, verbatim but for the port ----------------------------------------------------

@pytest.mark.parametrize("factory", [anthropic.Client, anthropic.Anthropic])
def test_seed_snippet_works_verbatim(live, fake_clis, factory):
    # The seed docs give base_url ".../anthropic/v1"; the SDK appends "/v1/messages" (served as an alias).
    client = factory(
        base_url=f"{live.url}/anthropic/v1",
        api_key="not-needed"
    )

    message = client.messages.create(
        model="claude",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Hello!"}]
    )
    assert message.content[0].text == "echo: Hello!"


def test_readme_snippet_works(live, fake_clis, capsys):
    code = readme_snippet("OpenAI and Anthropic SDKs", "import anthropic")
    assert '"http://127.0.0.1:8080/anthropic"' in code
    exec(compile(code.replace("http://127.0.0.1:8080", live.url), "README.rst", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("echo: Hello!\necho: Tell me a story\n") and out.endswith(" tokens\n")
    claude, codex = fake_clis.calls()
    assert claude["argv"][claude["argv"].index("--system-prompt") + 1] == "Answer briefly."
    assert codex["backend"] == "codex"


# -- messages -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_message(client, fake_clis, backend):
    message = client.messages.create(model=backend, max_tokens=100, messages=user("hello"))
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == backend
    assert [(b.type, b.text) for b in message.content] == [("text", "echo: hello")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    call = fake_clis.last()
    assert call["backend"] == backend and call["prompt"] == "hello"
    assert not {"--model", "-m"} & set(call["argv"])
    if backend in EPHEMERAL_FLAG:
        assert EPHEMERAL_FLAG[backend] in call["argv"]


def test_messages_are_stateless(client, fake_clis, live):
    for backend in BACKENDS:
        client.messages.create(model=backend, max_tokens=10, messages=user("hi"))
        with client.messages.stream(model=backend, max_tokens=10, messages=user("hi")) as stream:
            stream.get_final_message()
    assert requests.get(f"{live.url}/api/v1/sessions", timeout=30).json()["total"] == 0


@pytest.mark.parametrize("model, backend, passed", [
    ("claude-haiku-9-test", "claude", "claude-haiku-9-test"),
    ("haiku", "claude", "haiku"),
    ("gpt-5", "codex", "gpt-5"),
    ("o3", "codex", "o3"),
    ("gemini-2.5-pro", "gemini", "gemini-2.5-pro"),
    ("Gemini", "gemini", None),
])
def test_model_picks_the_backend(client, fake_clis, model, backend, passed):
    message = client.messages.create(model=model, max_tokens=10, messages=user("hi"))
    assert message.model == model
    call = fake_clis.last()
    assert call["backend"] == backend
    flag = "--model" if backend == "claude" else "-m"
    if passed is None:
        assert flag not in call["argv"]
    else:
        assert call["argv"][call["argv"].index(flag) + 1] == passed


def test_unknown_model_is_a_bad_request(client, fake_clis):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="mistral-large", max_tokens=10, messages=user("hi"))
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "mistral-large" in caught.value.message and "model" in caught.value.message
    assert fake_clis.calls() == []


@pytest.mark.parametrize("system", ["Be brief.", [{"type": "text", "text": "Be brief.",
                                                   "cache_control": {"type": "ephemeral"}}]])
def test_system_reaches_claude_as_its_flag(client, fake_clis, system):
    client.messages.create(model="claude", max_tokens=10, system=system, messages=user("hello"))
    call = fake_clis.last()
    assert call["argv"][call["argv"].index("--system-prompt") + 1] == "Be brief."
    assert call["prompt"] == "hello"


@pytest.mark.parametrize("backend", ["codex", "gemini"])
def test_system_is_folded_into_the_prompt_for_codex_and_gemini(client, fake_clis, backend):
    client.messages.create(model=backend, max_tokens=10, system="Be brief.", messages=user("hello"))
    prompt = fake_clis.last()["prompt"]
    assert "Be brief." in prompt and prompt.endswith("hello")


def test_content_blocks_and_earlier_turns_are_folded(client, fake_clis):
    message = client.messages.create(model="claude", max_tokens=10, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "first"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "text", "text": "part two"},
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": "resp"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ignored"},
                                     {"type": "text", "text": "second"}]},
    ])
    expected = "first\npart two\n[Previous response: resp]\n\nsecond"
    assert fake_clis.last()["prompt"] == expected
    assert message.content[0].text == "echo: " + expected


def test_too_long_system_prompt_for_claude_is_a_bad_request(client, fake_clis):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="claude", max_tokens=10, system="s" * 100_001, messages=user("hi"))
    assert "system prompt" in caught.value.message
    assert fake_clis.calls() == []


def test_unknown_and_ignored_fields_are_accepted(client, fake_clis):
    message = client.messages.create(
        model="claude", max_tokens=10, messages=user("hello"), stop_sequences=["END"],
        metadata={"user_id": "u-1"}, tool_choice={"type": "auto"}, service_tier="auto",
        tools=[{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        thinking={"type": "enabled", "budget_tokens": 1024}, cache_control={"type": "ephemeral"},
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 5, "some_future_field": [1, 2]})
    assert message.content[0].text == "echo: hello"


@pytest.mark.parametrize("field, value", [
    ("max_tokens", None),
    ("max_tokens", 0),
    ("max_tokens", "100"),
    ("model", None),
    ("model", 5),
    ("messages", []),
    ("messages", [{"role": "robot", "content": "hi"}]),
    ("messages", [{"role": "user", "content": None}]),
    ("messages", [{"role": "user", "content": [{"type": "text"}]}]),
    ("system", 5),
    ("system", [{"type": "text", "text": 5}]),
    ("stream", "true"),
    ("temperature", "warm"),
    ("stop_sequences", "END"),
])
def test_wrong_types_are_bad_requests_naming_the_field(live, fake_clis, field, value):
    body = {"model": "claude", "max_tokens": 10, "messages": user("hello")}
    if value is None:
        del body[field]
    else:
        body[field] = value
    response = requests.post(f"{live.url}/anthropic/v1/messages", json=body, timeout=30)
    assert response.status_code == 400
    data = response.json()
    assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    assert field in data["error"]["message"]
    assert fake_clis.calls() == []


def test_messages_without_user_text_are_a_bad_request(client, fake_clis):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="claude", max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}])
    assert "messages" in caught.value.message


# -- streaming ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_stream(client, fake_clis, backend):
    prompt = "hello there FAKE_CHUNKS=4"
    whole = client.messages.create(model=backend, max_tokens=100, messages=user(prompt)).content[0].text
    with client.messages.stream(model=backend, max_tokens=100, messages=user(prompt)) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == whole  # the same answer, streamed or not
    assert len(pieces) == 4  # token-level: one delta per piece the CLI wrote
    assert final.content[0].text == whole and final.stop_reason == "end_turn"
    assert final.model == backend and final.id.startswith("msg_")
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    if backend in EPHEMERAL_FLAG:
        call = fake_clis.last()  # a warm codex (app-server) is ephemeral per thread, not per argv
        assert EPHEMERAL_FLAG[backend] in call["argv"] or call.get("ephemeral") is True


def test_raw_stream_events(client, fake_clis):
    events = list(client.messages.create(model="gemini", max_tokens=10, messages=user("hi FAKE_CHUNKS=3"),
                                         stream=True))
    assert collapse([e.type for e in events]) == [n for n in EVENT_ORDER if n != "ping"]  # the SDK drops pings
    pieces = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert len(pieces) == 3 and "".join(pieces) == "echo: hi FAKE_CHUNKS=3"
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens > 0


def test_stream_wire_format(live, fake_clis):
    response = requests.post(f"{live.url}/anthropic/v1/messages", timeout=30, json={
        "model": "claude", "max_tokens": 10, "messages": user("hi FAKE_CHUNKS=2"), "stream": True})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
    events = sse_events(response.text)
    assert collapse([name for name, _ in events]) == EVENT_ORDER
    start = events[0][1]["message"]
    assert start["content"] == [] and start["role"] == "assistant" and start["stop_reason"] is None
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["input_tokens"] > 0 and delta["usage"]["output_tokens"] > 0


def test_alias_path_streams_too(live, fake_clis):
    client = anthropic.Anthropic(base_url=f"{live.url}/anthropic/v1", api_key="not-needed", max_retries=0)
    with client.messages.stream(model="codex", max_tokens=10, messages=user("hi")) as stream:
        assert stream.get_final_text() == "echo: hi"


def test_stream_delivers_deltas_while_the_cli_still_runs(client, fake_clis):
    with client.messages.stream(model="gemini", max_tokens=10,
                                messages=user("slow FAKE_CHUNKS=2 FAKE_CHUNK_DELAY=5")) as stream:
        next(iter(stream.text_stream))
        # The first piece arrived while the CLI was still sleeping before its second one.
        assert alive(fake_clis.last()["pid"])


def test_pings_while_the_cli_is_silent(make_live, fake_clis):
    live = make_live(server={"keepalive_interval_secs": 0.1})
    response = requests.post(f"{live.url}/anthropic/v1/messages", timeout=30, json={
        "model": "codex", "max_tokens": 10, "messages": user("wait FAKE_DELAY=1"), "stream": True})
    names = [name for name, _ in sse_events(response.text)]
    assert names.count("ping") > 1 and names[-1] == "message_stop"
    with sdk(live).messages.stream(model="codex", max_tokens=10, messages=user("wait FAKE_DELAY=1")) as stream:
        assert stream.get_final_text() == "echo: wait FAKE_DELAY=1"


def test_disconnect_mid_stream_kills_the_cli(make_live, fake_clis, monkeypatch):
    monkeypatch.setenv("FAKE_SPAWN_CHILD", "1")
    live = make_live(server={"keepalive_interval_secs": 0.1})
    service = live.server.app.extensions["clinvk.service"]
    with sdk(live).messages.stream(model="gemini", max_tokens=10, messages=user("FAKE_HANG")) as stream:
        assert next(iter(stream)).type == "message_start"
        assert wait_for(lambda: fake_clis.calls())
        call = fake_clis.last()
        assert alive(call["pid"]) and alive(call["child_pid"])
    # Leaving the block closed the connection; the next ping fails and the CLI's group is killed.
    assert wait_for(lambda: not alive(call["pid"]) and not alive(call["child_pid"]))
    assert wait_for(lambda: service.gate.running == 0)


# -- errors -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_run_is_a_502_with_the_cli_error_text(client, fake_clis, backend):
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.with_options(max_retries=2).messages.create(model=backend, max_tokens=10,
                                                           messages=user("FAKE_FAIL=401"))
    error = caught.value
    assert error.status_code == 502 and isinstance(error, anthropic.InternalServerError)
    assert error.body["error"]["type"] == "api_error"
    assert f"{backend} run failed" in error.message and FAIL_TEXT[backend] in error.message
    assert len(fake_clis.calls()) == 1  # x-should-retry: false, so the SDK did not repeat the run


@pytest.mark.parametrize("backend", BACKENDS)
def test_failure_after_the_stream_started_is_an_error_event(client, fake_clis, live, backend):
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(model=backend, max_tokens=10, messages=user("FAKE_FAIL=429")) as stream:
            for _ in stream:
                pass
    assert f"{backend} run failed" in caught.value.message
    raw = requests.post(f"{live.url}/anthropic/v1/messages", timeout=30, json={
        "model": backend, "max_tokens": 10, "messages": user("FAKE_FAIL=429"), "stream": True})
    events = sse_events(raw.text)
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error" and "run failed" in events[-1][1]["error"]["message"]


def test_timed_out_run_is_a_504(make_live, fake_clis):
    client = sdk(make_live(server={"request_timeout_secs": 1}), max_retries=2)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="codex", max_tokens=10, messages=user("FAKE_HANG"))
    error = caught.value
    assert error.status_code == 504 and error.body["error"]["type"] == "timeout_error"
    assert len(fake_clis.calls()) == 1
    assert wait_for(lambda: not alive(fake_clis.last()["pid"]))


def test_timeout_in_a_stream_is_an_error_event(make_live, fake_clis):
    live = make_live(server={"request_timeout_secs": 1, "keepalive_interval_secs": 0.2})
    response = requests.post(f"{live.url}/anthropic/v1/messages", timeout=30, json={
        "model": "claude", "max_tokens": 10, "messages": user("FAKE_HANG"), "stream": True})
    name, data = sse_events(response.text)[-1]
    assert name == "error" and data["error"]["type"] == "timeout_error"


def test_full_gate_is_a_rate_limit_error(make_live, fake_clis):
    live = make_live(server={"max_concurrent_runs": 1, "max_queued_runs": 0, "keepalive_interval_secs": 0.1})
    client = sdk(live)
    with client.messages.stream(model="claude", max_tokens=10, messages=user("FAKE_HANG")) as holder:
        next(iter(holder))  # the run slot is taken before the stream's first byte
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="gemini", max_tokens=10, messages=user("hi"))
        error = caught.value
        assert error.status_code == 429 and int(error.response.headers["Retry-After"]) >= 1
        assert error.body["error"]["type"] == "rate_limit_error"
    assert wait_for(lambda: live.server.app.extensions["clinvk.service"].gate.running == 0)
    assert client.messages.create(model="gemini", max_tokens=10, messages=user("hi")).content[0].text


def test_unavailable_backend_is_a_503(make_live, fake_clis):
    client = sdk(make_live(backends={"codex": {"command": "/nonexistent/codex"}}))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="gpt-5", max_tokens=10, messages=user("hi"))
    assert caught.value.status_code == 503 and "codex" in caught.value.message
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_api_keys(make_live, fake_clis):
    live = make_live(server={"api_keys": ["sk-clinvk-test-key"]})
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(base_url=f"{live.url}/anthropic", api_key="wrong", max_retries=0).messages.create(
            model="claude", max_tokens=10, messages=user("hi"))
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert fake_clis.calls() == []
    client = anthropic.Anthropic(base_url=f"{live.url}/anthropic", api_key="sk-clinvk-test-key", max_retries=0)
    with client.messages.stream(model="gemini", max_tokens=10, messages=user("hi")) as stream:
        assert stream.get_final_text() == "echo: hi"


def test_unknown_route_is_not_found(client, fake_clis):
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.count_tokens(model="claude", messages=user("hi"))
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_too_large_body_is_a_413(make_live, fake_clis):
    client = sdk(make_live(server={"max_request_body_bytes": 2000}))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude", max_tokens=10, messages=user("x" * 5000))
    assert caught.value.status_code == 413 and caught.value.body["error"]["type"] == "request_too_large"
    assert fake_clis.calls() == []
