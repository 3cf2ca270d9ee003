"""The OpenAI-compatible API (/openai/v1), driven by the official ``openai`` SDK against a real server
on 127.0.0.1 and the fake CLIs: only ``base_url`` changes, streaming included."""

from __future__ import annotations

import json
import re

import openai
import pytest
import requests
from openai import OpenAI

from tests.helpers import alive, wait_for
from tests.liveserver import live, make_live, readme_snippet  # noqa: F401 (fixtures)

BACKENDS = ["claude", "codex", "gemini"]
EPHEMERAL_FLAG = {"claude": "--no-session-persistence", "codex": "--ephemeral"}


def sdk(server, **kwargs) -> OpenAI:
    kwargs.setdefault("max_retries", 0)
    return OpenAI(base_url=f"{server.url}/openai/v1", api_key="not-needed", **kwargs)


@pytest.fixture
def client(live) -> OpenAI:  # noqa: F811 - the SDK client replaces the Flask test client here
    return sdk(live)


def user(text):
    return [{"role": "user", "content": text}]


def sse_frames(body: str) -> list[str]:
    return [frame for frame in body.split("\n\n") if frame]


# -- the seed docs' snippet, verbatim but for the port ----------------------------------------------------

def test_seed_snippet_works_verbatim(live, fake_clis):
    client = OpenAI(
        base_url=f"{live.url}/openai/v1",
        api_key="not-needed"  # clinvk doesn't require auth
    )

    response = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Hello!"}]
    )
    assert response.choices[0].message.content == "echo: Hello!"


def test_readme_snippet_works(live, fake_clis, capsys):
    code = readme_snippet("OpenAI and Anthropic SDKs", "from openai import OpenAI")
    assert '"http://127.0.0.1:8080/openai/v1"' in code
    exec(compile(code.replace("http://127.0.0.1:8080", live.url), "README.rst", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("echo: Hello!\necho: Tell me a story\n") and out.endswith(" tokens\n")
    claude, gemini = fake_clis.calls()
    assert claude["argv"][claude["argv"].index("--system-prompt") + 1] == "Answer briefly."
    assert gemini["argv"][gemini["argv"].index("-m") + 1] == "gemini-2.5-pro"


# -- models -------------------------------------------------------------------------------------------------

def test_models_lists_the_backends(client, fake_clis):
    models = client.models.list()
    assert [m.id for m in models.data] == BACKENDS
    for model in models.data:
        assert model.object == "model" and isinstance(model.created, int) and model.owned_by
        assert model.available is True  # clinvk's extra field survives in the SDK's model
    assert client.models.retrieve("codex").id == "codex"


def test_models_say_which_backend_is_unavailable(make_live, fake_clis):
    client = sdk(make_live(backends={"gemini": {"command": "no-such-gemini-cli"}}))
    available = {m.id: m.available for m in client.models.list().data}
    assert available == {"claude": True, "codex": True, "gemini": False}


def test_unknown_model_retrieve_is_not_found(client, fake_clis):
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("llama-3")
    assert "llama-3" in caught.value.message


# -- completions --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_completion(client, fake_clis, backend):
    response = client.chat.completions.create(model=backend, messages=user("hello"))
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    assert response.model == backend
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "echo: hello"
    assert choice.finish_reason == "stop"
    usage = response.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    call = fake_clis.last()
    assert call["backend"] == backend and call["prompt"] == "hello"
    # A backend name runs the backend's configured model: no model flag at all.
    assert not {"--model", "-m"} & set(call["argv"])
    if backend in EPHEMERAL_FLAG:
        assert EPHEMERAL_FLAG[backend] in call["argv"]


def test_completions_are_stateless(client, fake_clis, live):
    for backend in BACKENDS:
        client.chat.completions.create(model=backend, messages=user("hi"))
        client.chat.completions.create(model=backend, messages=user("hi"), stream=True).close()
    sessions = requests.get(f"{live.url}/api/v1/sessions", timeout=30).json()
    assert sessions["total"] == 0


@pytest.mark.parametrize("model, backend, passed", [
    ("gpt-4o", "codex", "gpt-4o"),
    ("o3-mini", "codex", "o3-mini"),
    ("openai/o4-mini", "codex", "openai/o4-mini"),
    ("gpt-5-codex", "codex", "gpt-5-codex"),
    ("CODEX", "codex", None),
    ("claude-sonnet-4-5", "claude", "claude-sonnet-4-5"),
    ("sonnet", "claude", "sonnet"),
    ("gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
])
def test_model_picks_the_backend(client, fake_clis, model, backend, passed):
    response = client.chat.completions.create(model=model, messages=user("hi"))
    assert response.model == model
    call = fake_clis.last()
    assert call["backend"] == backend
    argv = call["argv"]
    flag = "--model" if backend == "claude" else "-m"
    if passed is None:
        assert flag not in argv
    else:
        assert argv[argv.index(flag) + 1] == passed


def test_unknown_model_is_a_bad_request_naming_model(client, fake_clis):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="llama-3-70b", messages=user("hi"))
    error = caught.value
    assert error.status_code == 400 and error.body["param"] == "model"
    assert "llama-3-70b" in error.message and "claude" in error.message
    assert fake_clis.calls() == []


# -- messages → prompt ------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_prompt_reaches_claude_as_its_flag(client, fake_clis, role):
    client.chat.completions.create(model="claude", messages=[
        {"role": role, "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ])
    call = fake_clis.last()
    assert call["argv"][call["argv"].index("--system-prompt") + 1] == "Be brief."
    assert call["prompt"] == "hello"


@pytest.mark.parametrize("backend", ["codex", "gemini"])
def test_system_prompt_is_folded_into_the_prompt_for_codex_and_gemini(client, fake_clis, backend):
    client.chat.completions.create(model=backend, messages=[
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "hello"},
    ])
    prompt = fake_clis.last()["prompt"]
    assert "Be brief." in prompt and prompt.endswith("hello")


def test_multipart_content_and_earlier_turns_are_folded(client, fake_clis):
    response = client.chat.completions.create(model="claude", messages=[
        {"role": "assistant", "content": "a leading assistant turn is dropped"},
        {"role": "user", "content": [
            {"type": "text", "text": "first"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "part two"},
        ]},
        {"role": "assistant", "content": "resp", "name": "bot"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "tool output is not ours"},
        {"role": "user", "content": "second"},
    ])
    expected = "first\npart two\n[Previous response: resp]\n\nsecond"
    assert fake_clis.last()["prompt"] == expected
    assert response.choices[0].message.content == "echo: " + expected


def test_messages_without_user_text_are_a_bad_request(client, fake_clis):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude", messages=[{"role": "system", "content": "only this"}])
    assert caught.value.body["param"] == "messages"


def test_too_long_system_prompt_for_claude_is_a_bad_request(client, fake_clis):
    system = [{"role": "system", "content": "s" * 100_001}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude", messages=system + user("hi"))
    assert caught.value.body["param"] == "messages" and "system prompt" in caught.value.message
    # codex reads it on stdin with the prompt, so any size works there.
    client.chat.completions.create(model="codex", messages=system + user("hi"))
    assert len(fake_clis.last()["prompt"]) > 100_001


def test_dry_run_config_answers_with_the_command_and_estimated_usage(make_live, fake_clis):
    client = sdk(make_live(unified_flags={"dry_run": True}))
    response = client.chat.completions.create(model="claude", messages=user("hello"))
    assert response.choices[0].message.content.startswith("Would execute: ")
    assert response.usage.prompt_tokens == 2 and response.usage.completion_tokens > 0  # 4 characters a token
    chunks = list(client.chat.completions.create(model="gemini", messages=user("hello"), stream=True))
    assert "Would execute: " in "".join(c.choices[0].delta.content or "" for c in chunks)
    assert fake_clis.calls() == []


def test_openapi_documents_the_compat_endpoints(live, fake_clis):
    spec = requests.get(f"{live.url}/openapi.json", timeout=30).json()
    paths = spec["paths"]
    assert {"/openai/v1/models", "/openai/v1/models/{model}", "/openai/v1/chat/completions",
            "/anthropic/v1/messages"} <= set(paths)
    assert "/anthropic/v1/v1/messages" not in paths  # the alias is not a second API
    text = json.dumps(paths)
    refs = {ref.rsplit("/", 1)[-1] for ref in
            re.findall(r'"\$ref": "(#/components/schemas/[^"]+)"', text)}
    assert {"OpenAIChatCompletionRequestSchema", "OpenAIChatCompletionSchema", "OpenAIChatCompletionChunkSchema",
            "OpenAIErrorSchema", "AnthropicMessagesRequestSchema", "AnthropicMessageSchema",
            "AnthropicStreamEventSchema", "AnthropicErrorSchema"} <= refs
    assert refs <= set(spec["components"]["schemas"])


def test_unknown_and_ignored_fields_are_accepted(client, fake_clis):
    response = client.chat.completions.create(
        model="claude", messages=user("hello"), temperature=0.2, top_p=0.9, n=1, stop="END", user="u-1",
        max_tokens=50, max_completion_tokens=60, presence_penalty=0, frequency_penalty=0.5, seed=7,
        logit_bias={"50256": -100}, response_format={"type": "text"}, parallel_tool_calls=False,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice="auto", metadata={"k": "v"},
        extra_body={"some_future_field": {"x": 1}, "stop": ["A", "B"]})
    assert response.choices[0].message.content == "echo: hello"


@pytest.mark.parametrize("field, value", [
    ("temperature", "hot"),
    ("stream", "yes"),
    ("max_tokens", "50"),
    ("max_tokens", 0),
    ("n", True),
    ("stop", 5),
    ("user", 5),
    ("stream_options", {"include_usage": "yes"}),
    ("messages", []),
    ("messages", [{"role": "robot", "content": "hi"}]),
    ("messages", [{"role": "user", "content": 5}]),
    ("messages", [{"role": "user", "content": [{"type": "text", "text": 5}]}]),
    ("messages", [{"role": "user"}, "not an object"]),
    ("model", 7),
    ("model", ""),
])
def test_wrong_types_are_bad_requests_naming_the_field(live, fake_clis, field, value):
    body = {"model": "claude", "messages": user("hello"), field: value}
    response = requests.post(f"{live.url}/openai/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith(field) and field in error["message"]
    assert fake_clis.calls() == []


def test_wrong_type_through_the_sdk_raises_bad_request(client, fake_clis):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude", messages=user("hi"), temperature="hot")
    assert caught.value.body["param"] == "temperature"


@pytest.mark.parametrize("data, content_type, status", [
    ("{not json", "application/json", 400),
    ("[1, 2]", "application/json", 400),
    ("", "application/json", 400),
    ("model=claude", "application/x-www-form-urlencoded", 415),
])
def test_malformed_bodies_are_openai_errors(live, fake_clis, data, content_type, status):
    response = requests.post(f"{live.url}/openai/v1/chat/completions", data=data,
                             headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == status
    assert set(response.json()["error"]) >= {"message", "type", "code"}


# -- streaming ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_stream(client, fake_clis, backend):
    prompt = "hello there FAKE_CHUNKS=4"
    whole = client.chat.completions.create(model=backend, messages=user(prompt)).choices[0].message.content
    chunks = list(client.chat.completions.create(model=backend, messages=user(prompt), stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.model == backend for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert "".join(content) == whole  # the same answer, streamed or not
    assert len(content) == 4  # token-level: one delta per piece the CLI wrote
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"] and finish[0] is chunks[-2]
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.prompt_tokens > 0 and usage.usage.completion_tokens > 0
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens
    if backend in EPHEMERAL_FLAG:
        call = fake_clis.last()  # a warm codex (app-server) is ephemeral per thread, not per argv
        assert EPHEMERAL_FLAG[backend] in call["argv"] or call.get("ephemeral") is True


def test_stream_without_include_usage_has_no_usage_chunk(client, fake_clis):
    chunks = list(client.chat.completions.create(model="claude", messages=user("hi"), stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_wire_format(live, fake_clis):
    response = requests.post(f"{live.url}/openai/v1/chat/completions", timeout=30, json={
        "model": "gemini", "messages": user("hi"), "stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
    frames = sse_frames(response.text)
    assert frames[-1] == "data: [DONE]"
    assert all(f.startswith("data: ") for f in frames)
    payloads = [json.loads(f[len("data: "):]) for f in frames[:-1]]
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert payloads[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["total_tokens"] > 0


def test_stream_delivers_deltas_while_the_cli_still_runs(client, fake_clis):
    stream = client.chat.completions.create(
        model="claude", messages=user("slow FAKE_CHUNKS=2 FAKE_CHUNK_DELAY=5"), stream=True)
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        # The first piece arrived while the CLI was still sleeping before its second one.
        assert alive(fake_clis.last()["pid"])


def test_keepalive_comments_while_the_cli_is_silent(make_live, fake_clis):
    live = make_live(server={"keepalive_interval_secs": 0.1})
    response = requests.post(f"{live.url}/openai/v1/chat/completions", timeout=30, json={
        "model": "claude", "messages": user("wait FAKE_DELAY=1"), "stream": True})
    frames = sse_frames(response.text)
    assert ": keep-alive" in frames
    assert frames[-1] == "data: [DONE]"
    # ...and the SDK reads through them.
    chunks = list(sdk(live).chat.completions.create(model="claude", messages=user("wait FAKE_DELAY=1"),
                                                    stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: wait FAKE_DELAY=1"


def test_disconnect_mid_stream_kills_the_cli(make_live, fake_clis, monkeypatch):
    monkeypatch.setenv("FAKE_SPAWN_CHILD", "1")
    live = make_live(server={"keepalive_interval_secs": 0.1})
    app_service = live.server.app.extensions["clinvk.service"]
    stream = sdk(live).chat.completions.create(model="claude", messages=user("FAKE_HANG"), stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    assert wait_for(lambda: fake_clis.calls())
    call = fake_clis.last()
    assert alive(call["pid"]) and alive(call["child_pid"])
    stream.close()
    # The server notices on its next write (a keep-alive) and kills the CLI's whole process group.
    assert wait_for(lambda: not alive(call["pid"]) and not alive(call["child_pid"]))
    assert wait_for(lambda: app_service.gate.running == 0)


# -- errors -------------------------------------------------------------------------------------------------

FAIL_TEXT = {"claude": "Invalid API key", "codex": "Incorrect API key", "gemini": "API key not valid"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_run_is_a_502_with_the_cli_error_text(client, fake_clis, backend):
    with pytest.raises(openai.APIStatusError) as caught:
        client.with_options(max_retries=2).chat.completions.create(model=backend, messages=user("FAKE_FAIL=401"))
    error = caught.value
    assert error.status_code == 502 and isinstance(error, openai.InternalServerError)
    assert f"{backend} run failed" in error.message and FAIL_TEXT[backend] in error.message
    assert error.response.headers["x-should-retry"] == "false"
    assert len(fake_clis.calls()) == 1  # the SDK did not repeat the run


@pytest.mark.parametrize("backend", BACKENDS)
def test_failure_after_the_stream_started_is_an_error_frame(client, fake_clis, live, backend):
    stream = client.chat.completions.create(model=backend, messages=user("FAKE_FAIL=500"), stream=True)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            seen.append(chunk)
    assert seen and seen[0].choices[0].delta.role == "assistant"
    assert f"{backend} run failed" in caught.value.message
    raw = requests.post(f"{live.url}/openai/v1/chat/completions", timeout=30, json={
        "model": backend, "messages": user("FAKE_FAIL=500"), "stream": True})
    frames = sse_frames(raw.text)
    assert frames[-1] == "data: [DONE]"
    error = json.loads(frames[-2][len("data: "):])["error"]
    assert error["type"] == "server_error" and error["code"] == "backend_failed"


def test_crashing_cli_is_a_502_with_its_stderr(client, fake_clis):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="codex", messages=user("FAKE_FAIL=crash"))
    assert caught.value.status_code == 502 and "simulated crash" in caught.value.message


def test_timed_out_run_is_a_504(make_live, fake_clis):
    client = sdk(make_live(server={"request_timeout_secs": 1}), max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="claude", messages=user("FAKE_HANG"))
    assert caught.value.status_code == 504 and "request_timeout_secs" in caught.value.message
    assert len(fake_clis.calls()) == 1
    assert wait_for(lambda: not alive(fake_clis.last()["pid"]))


def test_full_gate_is_a_rate_limit_error(make_live, fake_clis):
    live = make_live(server={"max_concurrent_runs": 1, "max_queued_runs": 0, "keepalive_interval_secs": 0.1})
    client = sdk(live)
    holder = client.chat.completions.create(model="claude", messages=user("FAKE_HANG"), stream=True)
    try:
        next(iter(holder))  # the run slot is taken before the stream's first byte
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="codex", messages=user("hi"))
        error = caught.value
        assert error.status_code == 429 and int(error.response.headers["Retry-After"]) >= 1
        assert error.body["type"] == "rate_limit_error" and "busy" in error.message
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="codex", messages=user("hi"), stream=True)
    finally:
        holder.close()
    assert wait_for(lambda: live.server.app.extensions["clinvk.service"].gate.running == 0)
    assert client.chat.completions.create(model="codex", messages=user("hi")).choices[0].message.content


def test_unavailable_backend_is_a_503_naming_model(make_live, fake_clis):
    client = sdk(make_live(backends={"gemini": {"enabled": False}}), max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gemini-2.5-pro", messages=user("hi"), stream=True)
    error = caught.value
    assert error.status_code == 503 and error.body["param"] == "model" and "gemini" in error.message


def test_api_keys(make_live, fake_clis):
    live = make_live(server={"api_keys": ["sk-clinvk-test-key"]})
    with pytest.raises(openai.AuthenticationError) as caught:
        OpenAI(base_url=f"{live.url}/openai/v1", api_key="wrong", max_retries=0).models.list()
    assert caught.value.body["type"] == "authentication_error"
    client = OpenAI(base_url=f"{live.url}/openai/v1", api_key="sk-clinvk-test-key", max_retries=0)
    assert client.chat.completions.create(model="claude", messages=user("hi")).choices[0].message.content
    chunks = list(client.chat.completions.create(model="codex", messages=user("hi"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_unknown_route_is_not_found(client, fake_clis):
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="claude", input="hi")
    assert caught.value.body["type"] == "not_found_error"
    assert "/openai/v1/embeddings" in caught.value.message


def test_too_large_body_is_a_413(make_live, fake_clis):
    client = sdk(make_live(server={"max_request_body_bytes": 2000}))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="claude", messages=user("x" * 5000))
    assert caught.value.status_code == 413
    assert fake_clis.calls() == []
