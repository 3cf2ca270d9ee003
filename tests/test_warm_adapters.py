"""The warm protocols against the genuine CLIs' captured long-lived conversations (tests/fixtures/warm,
from /work/measure/warm): the lines they send are the captured ones, and what they translate the
replies into parses to the result the one-shot output of the same prompt gives."""

from __future__ import annotations

import json
from pathlib import Path

from clinvk.backends import BACKENDS
from clinvk.warm import claude, codex

FIXTURES = Path(__file__).parent / "fixtures" / "warm"


def lines(name: str) -> list[str]:
    return [line for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def replay(protocol, prompt: str, stdout: list[str]) -> tuple[list[str], list[str], bool]:
    """Feed the captured stdout; the run starts when the capture's prompt was sent (after the handshake)."""
    sent, output, done = list(protocol.opening()), [], False
    running = False
    for line in stdout:
        message = json.loads(line)
        if not running and (message.get("type") or message.get("id") == 3 or "method" in message
                            and message["method"] not in ("remoteControl/status/changed", "thread/started")):
            step = protocol.start(prompt)
            sent += step.send
            output += step.output
            running = True
        step = protocol.receive(message, line, running)
        sent += step.send
        output += step.output
        done = done or step.done
    return sent, output, done


def result(backend: str, stdout: str):
    return BACKENDS[backend].parse_output(stdout, "", 0)


def test_claude_warm_argv_comes_from_the_one_shot_argv():
    one_shot = json.loads((FIXTURES / "claude-oneshot.argv.json").read_text())
    assert claude.warm_argv(one_shot, 0) == ["claude", "-p", "--input-format", "stream-json", "--output-format",
                                             "stream-json", "--verbose", "--model", "sonnet",
                                             "--no-session-persistence"]
    streaming = ["claude", "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                 "--no-session-persistence"]
    assert claude.warm_argv(streaming, 0) == ["claude", "-p", "--input-format", "stream-json"] + streaming[2:]
    wrapped = ["bwrap", "--die-with-parent", "--"] + one_shot
    assert claude.warm_argv(wrapped, 3)[:4] == ["bwrap", "--die-with-parent", "--", "claude"]


def test_claude_only_ephemeral_new_runs_are_poolable():
    assert claude.warm_argv(["claude", "-p", "--output-format", "json"], 0) is None  # keeps a session
    assert claude.warm_argv(["claude", "-p", "--output-format", "json", "--resume", "x",
                             "--no-session-persistence"], 0) is None


def test_claude_conversation_gives_the_one_shot_result():
    protocol = claude.ClaudeProtocol()
    sent, output, done = replay(protocol, "say hello", lines("claude-stream-json.stdout.jsonl"))
    assert sent == lines("claude-stream-json.stdin.jsonl")
    assert done
    warm, cold = result("claude", "\n".join(output)), result("claude", (FIXTURES / "claude-oneshot.stdout").read_text())
    assert warm.text == cold.text == "echo: say hello" and warm.error is None
    assert warm.token_usage == cold.token_usage and warm.model == cold.model


def test_codex_thread_options_come_from_the_one_shot_argv():
    one_shot = json.loads((FIXTURES / "codex-oneshot.argv.json").read_text())
    assert codex.thread_options(one_shot, 0) == {"model": "gpt-5.5"}
    assert codex.warm_argv(one_shot, 0) == ["codex", "app-server"]
    with_sandbox = one_shot[:6] + ["-s", "read-only"] + one_shot[6:]
    assert codex.thread_options(with_sandbox, 0) == {"model": "gpt-5.5", "sandbox": "read-only"}
    assert codex.thread_options(one_shot[:-2] + ["-"], 0) is None  # not ephemeral
    assert codex.thread_options(one_shot[:-1] + ["resume", "x", "-"], 0) is None
    assert codex.thread_options(one_shot[:-2] + ["-c", "x=1", "--ephemeral", "-"], 0) is None  # unknown flag


def test_codex_conversation_sends_the_captured_handshake_and_gives_the_one_shot_result():
    protocol = codex.CodexProtocol({"model": "gpt-5.5", "sandbox": "read-only"}, "/work/work", "0.169.0")
    stdout = lines("codex-app-server.stdout.jsonl")
    sent, output, done = replay(protocol, "say hello", stdout)
    assert [json.loads(s) for s in sent] == [json.loads(s) for s in lines("codex-app-server.stdin.jsonl")]
    assert done
    warm, cold = result("codex", "\n".join(output)), result("codex", (FIXTURES / "codex-oneshot.stdout").read_text())
    assert warm.text == cold.text == "echo: say hello" and warm.error is None
    assert warm.token_usage == cold.token_usage
    assert warm.backend_session_id == json.loads(stdout[2])["result"]["thread"]["id"]
    parser = BACKENDS["codex"].stream_parser()
    kinds = [event.type for line in output for event in parser.feed(line)]
    assert kinds == ["init", "progress", "message"]  # the events a cold stream gives


def test_codex_prompt_waits_for_the_thread_and_a_failed_turn_is_the_error():
    protocol = codex.CodexProtocol({}, "/w", "0.169.0")
    assert protocol.start("hi").send == []  # no thread yet: held
    protocol.receive({"id": 1, "result": {}}, "", True)
    step = protocol.receive({"id": 2, "result": {"thread": {"id": "T"}}}, "", True)
    assert json.loads(step.send[0])["params"] == {"threadId": "T", "input": [
        {"type": "text", "text": "hi", "text_elements": []}]}
    protocol.receive({"method": "error", "params": {"error": {"message": "stub says no"}}}, "", True)
    end = protocol.receive({"method": "turn/completed", "params": {"turn": {"status": "failed", "error": None}}},
                           "", True)
    assert end.done and result("codex", "\n".join(step.output + end.output)).error == "stub says no"


def test_codex_requests_from_the_server_are_refused_not_left_waiting():
    step = codex.CodexProtocol({}, "/w", "0.169.0").receive(
        {"id": 7, "method": "item/commandExecution/requestApproval", "params": {}}, "", True)
    assert json.loads(step.send[0])["id"] == 7 and "error" in json.loads(step.send[0])
