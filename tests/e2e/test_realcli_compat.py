"""The OpenAI- and Anthropic-compatible APIs end to end: the official SDKs → clinvk (a real server on
127.0.0.1) → the genuine claude/codex/gemini CLIs → loopback stubs of their vendor APIs.

They fail (never skip) when a CLI is missing: run ``scripts/install-clis.sh``.
"""

from __future__ import annotations

import json
import os

import anthropic
import openai
import pytest

from tests import realcli
from tests.helpers import wait_for
from tests.liveserver import LiveServer
from tests.stubs import anthropic_stub, gemini_stub, openai_responses_stub

pytestmark = pytest.mark.realcli

STUBS = {"claude": anthropic_stub, "codex": openai_responses_stub, "gemini": gemini_stub}
REPLY = "Hello from stub"
SYSTEM = "Answer in one word."
PROMPT = "say hello"
# Where each CLI keeps a conversation it was allowed to keep (reference/*-cli.md): none may appear.
TRANSCRIPTS = {"claude": ".claude/projects/**/*.jsonl", "codex": ".codex/sessions/**/*.jsonl",
               "gemini": ".gemini/tmp/*/chats/*"}


class Setup:
    """One backend's stub, a clinvk server whose backend is the real CLI pointed at that stub, and the SDKs."""

    def __init__(self, backend, stub, server, home):
        self.backend, self.stub, self.server, self.home = backend, stub, server, home
        self.model = realcli.E2E_MODELS[backend]  # a model name that maps to this backend and keeps it quiet
        self.openai = openai.OpenAI(base_url=f"{server.url}/openai/v1", api_key="not-needed", max_retries=0)
        self.anthropic = anthropic.Anthropic(base_url=f"{server.url}/anthropic", api_key="not-needed",
                                             max_retries=0)

    def model_requests(self):
        """What the CLI sent its vendor API (gemini also asks other endpoints; keep the model calls)."""
        return [r for r in self.stub.requests if self.backend != "gemini"
                or r.get("method") == "streamGenerateContent"]

    def check_request(self):
        """The prompt and the system prompt reached the vendor API; the CLI ran in the ephemeral mode."""
        requests = self.model_requests()
        assert requests, "the stub saw no model request"
        last = requests[-1]
        assert last["user_text"].endswith(PROMPT), last["user_text"]
        assert SYSTEM in json.dumps(last["body"], ensure_ascii=False)
        # Stateless: the CLI ran in its ephemeral mode (or clinvk deleted the transcript).
        assert list(self.home.glob(TRANSCRIPTS[self.backend])) == []
        return last


@pytest.fixture(params=realcli.BACKENDS)
def setup(request, tmp_path, make_app, monkeypatch):
    backend = request.param
    exe = realcli.find_cli(backend)
    if not exe:
        pytest.fail(f"{backend} CLI not found: {realcli.INSTALL_HINT}", pytrace=False)
    # The server's environment reaches the CLI: drop what would change its behaviour or leak credentials.
    for name in set(os.environ) - set(realcli.base_env()):
        monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the compat APIs run the CLI in the server's directory
    stub = STUBS[backend].start_stub(mode="ok", reply=REPLY)
    home = tmp_path / "home"
    env = realcli.offline_env(backend, stub.url, home, timeout_s=30)
    app = make_app(backends={backend: {"command": exe, "env": env}},
                   server={"request_timeout_secs": 120, "keepalive_interval_secs": 1})
    with LiveServer(app) as server:
        yield Setup(backend, stub, server, home)
    stub.stop()


def test_openai_sdk(setup):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    response = setup.openai.chat.completions.create(model=setup.model, messages=messages)
    assert response.choices[0].message.content == REPLY
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    setup.check_request()

    chunks = list(setup.openai.chat.completions.create(model=setup.model, messages=messages, stream=True,
                                                       stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens > 0
    setup.check_request()


def test_anthropic_sdk(setup):
    messages = [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    message = setup.anthropic.messages.create(model=setup.model, max_tokens=100, system=SYSTEM,
                                              messages=messages)
    assert message.content[0].text == REPLY and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    setup.check_request()

    with setup.anthropic.messages.stream(model=setup.model, max_tokens=100, system=SYSTEM,
                                         messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY and final.content[0].text == REPLY
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    setup.check_request()


def test_vendor_error_is_a_502_with_the_cli_message(setup):
    setup.stub.set_mode("401")
    with pytest.raises(openai.InternalServerError) as caught:
        setup.openai.chat.completions.create(model=setup.model, messages=[{"role": "user", "content": PROMPT}])
    assert caught.value.status_code == 502 and f"{setup.backend} run failed" in caught.value.message
    with pytest.raises(anthropic.APIStatusError) as caught:
        with setup.anthropic.messages.stream(model=setup.model, max_tokens=100,
                                             messages=[{"role": "user", "content": PROMPT}]) as stream:
            stream.get_final_message()
    assert f"{setup.backend} run failed" in caught.value.message


def test_disconnect_ends_the_run_and_leaves_no_transcript(setup):
    setup.stub.set_mode("hang")  # the vendor API never answers: the CLI waits
    service = setup.server.server.app.extensions["clinvk.service"]
    with setup.anthropic.messages.stream(model=setup.model, max_tokens=100,
                                         messages=[{"role": "user", "content": PROMPT}]) as stream:
        assert next(iter(stream)).type == "message_start"
        assert wait_for(setup.model_requests)  # the CLI is running (and gemini has begun its transcript)
    # Leaving the block closed the connection; the next ping fails and clinvk ends the run.
    assert wait_for(lambda: service.gate.running == 0)
    assert wait_for(lambda: not list(setup.home.glob(TRANSCRIPTS[setup.backend])))
