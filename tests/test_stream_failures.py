"""Every kind of stream ends the same way when the server fails in the middle of it: an error event in
its own format, its terminal marker, the CLI killed, the run slot freed, and one log line naming the
request id. The failure is injected after the first event, while the fake CLI still runs (FAKE_HANG)."""

from __future__ import annotations

import json
import logging

import pytest

from clinvk.orchestration import ParallelStream
from clinvk.service import StreamingRun
from tests.helpers import ndjson, wait_gone

REQUEST_ID = "stream-failure-test"
STREAM_LOGGER = "clinvk.server.http.streaming"


def fail_after_first_event(cls, monkeypatch) -> None:
    """Make ``cls.events`` raise once it has yielded its first real (non keep-alive) event."""
    original = cls.events

    def events(self, keepalive):
        for item in original(self, keepalive):
            yield item
            if item is not None:
                raise RuntimeError("injected failure")

    monkeypatch.setattr(cls, "events", events)


def post(client, path: str, body: dict):
    return client.post(path, json=body, headers={"X-Request-Id": REQUEST_ID})


def sse(response) -> list[tuple[str | None, str]]:
    """(event name or None, data) of each SSE frame; comments (keep-alives) left out."""
    frames = []
    for block in response.get_data(as_text=True).split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            frames.append((fields.get("event"), fields["data"]))
    return frames


@pytest.fixture
def failure_log(caplog):
    caplog.set_level(logging.INFO, logger=STREAM_LOGGER)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == STREAM_LOGGER]

    return lines


def assert_ended(app, fake_clis, failure_log) -> None:
    calls = fake_clis.calls()
    assert calls, "no CLI was started"
    assert wait_gone(*(c["pid"] for c in calls)), "the CLI still runs after the stream ended"
    assert app.extensions["clinvk.service"].gate.running == 0
    logged = failure_log()
    assert len(logged) == 1 and f"request_id={REQUEST_ID}" in logged[0], logged


def test_native_prompt_stream(app, client, fake_clis, failure_log, monkeypatch):
    fail_after_first_event(StreamingRun, monkeypatch)
    response = post(client, "/api/v1/prompt", {"backend": "claude", "prompt": "FAKE_HANG",
                                                "output_format": "stream-json"})
    assert response.status_code == 200
    events = ndjson(response)
    assert [e["type"] for e in events] == ["init", "error", "done"]
    error, done = events[1:]
    assert error["content"]["code"] == "internal_error" and "server log" in error["content"]["message"]
    assert error["backend"] == done["backend"] == "claude" and done["content"]["exit_code"] == -1
    assert error["session_id"] == events[0]["session_id"]
    assert_ended(app, fake_clis, failure_log)


@pytest.mark.parametrize("path,body", [
    ("/api/v1/parallel", {"tasks": [{"backend": "claude", "prompt": "FAKE_HANG"}], "output_format": "stream-json"}),
    ("/api/v1/compare", {"prompt": "FAKE_HANG", "backends": ["claude"], "output_format": "stream-json"}),
], ids=["parallel", "compare"])
def test_orchestration_stream(app, client, fake_clis, failure_log, monkeypatch, path, body):
    fail_after_first_event(ParallelStream, monkeypatch)
    response = post(client, path, body)
    assert response.status_code == 200
    events = ndjson(response)
    assert [e["type"] for e in events] == ["init", "error", "done"]
    assert events[0]["task"] == 0
    error, done = events[1:]
    assert "task" not in error and "task" not in done  # the batch's own events
    assert error["content"]["code"] == "internal_error" and done["content"]["exit_code"] == -1
    assert_ended(app, fake_clis, failure_log)


def test_openai_stream(app, client, fake_clis, failure_log, monkeypatch):
    fail_after_first_event(StreamingRun, monkeypatch)
    response = post(client, "/openai/v1/chat/completions", {
        "model": "claude", "stream": True, "messages": [{"role": "user", "content": "FAKE_HANG"}]})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    frames = [data for _, data in sse(response)]
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    assert all("choices" in json.loads(frame) for frame in frames[:-2])  # chunks until the failure
    assert_ended(app, fake_clis, failure_log)


def test_anthropic_stream(app, client, fake_clis, failure_log, monkeypatch):
    fail_after_first_event(StreamingRun, monkeypatch)
    response = post(client, "/anthropic/v1/messages", {
        "model": "claude", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "FAKE_HANG"}]})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    frames = sse(response)
    assert [name for name, _ in frames][:3] == ["message_start", "content_block_start", "ping"]
    name, data = frames[-1]
    assert name == "error" and json.loads(data) == {"type": "error", "error": {
        "type": "api_error", "message": "the run failed inside the server; the server log has the details"}}
    assert "message_stop" not in [n for n, _ in frames]
    assert_ended(app, fake_clis, failure_log)
