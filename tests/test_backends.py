"""Adapter unit tests against real outputs captured from the pinned CLIs (tests/fixtures)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinvk.backends import BACKENDS, RunSpec, UnsupportedOption

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(backend: str, name: str) -> tuple[str, str, int]:
    base = FIXTURES / backend / name
    return (Path(f"{base}.stdout").read_text(), Path(f"{base}.stderr").read_text(),
            int(Path(f"{base}.exitcode").read_text().strip()))


def parse(backend: str, name: str):
    return BACKENDS[backend].parse_output(*fixture(backend, name))


def stream(backend: str, name: str):
    stdout, stderr, code = fixture(backend, name)
    parser = BACKENDS[backend].stream_parser()
    events = [event for line in stdout.splitlines() for event in parser.feed(line)]
    return events, BACKENDS[backend].finish_stream(parser, stderr, code)


def help_flags(backend: str) -> set[str]:
    names = {"claude": ["help.txt"], "codex": ["exec-help.txt", "exec-resume-help.txt"], "gemini": ["help.txt"]}
    text = "".join((FIXTURES / backend / n).read_text() for n in names[backend])
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


# -- final output -----------------------------------------------------------------------------------

def test_claude_json_result():
    out = parse("claude", "print-json")
    assert out.text == "Hello from stub" and out.error is None
    assert out.backend_session_id == "3ad707f3-c2c8-41d3-af14-9ab55e93e411"
    assert out.token_usage.input_tokens == 12311 and out.token_usage.output_tokens == 5
    assert out.model == "claude-opus-5-5"


def test_claude_api_error_is_an_error_although_subtype_says_success():
    out = parse("claude", "error-401-json")
    assert out.error == "Invalid API key · Fix external API key"


def test_claude_max_turns_has_no_result_key():
    out = parse("claude", "max-turns-1-tool")
    assert out.error == "Reached maximum number of turns (1)"


def test_claude_usage_error_on_stderr():
    out = parse("claude", "resume-nonexistent")
    assert "No conversation found with session ID" in out.error and "exited with status 1" in out.error


def test_codex_jsonl_answer_and_usage():
    out = parse("codex", "exec-json")
    assert out.text == "Hello from stub" and out.error is None  # the metadata warning item is not an error
    assert out.backend_session_id == "01a203d4-ccec-7d23-b0fd-224066e6cdeb"
    assert (out.token_usage.input_tokens, out.token_usage.output_tokens) == (42, 7)


def test_codex_turn_failed():
    out = parse("codex", "error-401")
    assert out.error.startswith("unexpected status 401 Unauthorized")


def test_codex_resume_of_unknown_thread_keeps_message_not_noise():
    out = parse("codex", "resume-unknown-id")
    assert "no rollout found for thread id" in out.error
    assert "PATH aliases" not in out.error


def test_gemini_json_sums_usage_over_models():
    out = parse("gemini", "json")
    assert out.text == "Hello from stub" and out.error is None
    assert out.backend_session_id
    assert out.token_usage.input_tokens > 0 and out.token_usage.output_tokens > 0


def test_gemini_error_json_on_stderr():
    out = parse("gemini", "error-401")
    assert out.error == "API key not valid. Please pass a valid API key. (code 401)"
    assert out.backend_session_id == "915197f0-7828-4a52-bea9-691a528bf081"


def test_gemini_plain_text_error_without_ansi():
    out = parse("gemini", "error-untrusted-json")
    assert "not running in a trusted directory" in out.error and "\x1b" not in out.error


def test_gemini_resume_missing():
    assert "Invalid session identifier" in parse("gemini", "resume-missing").error


# -- streams ----------------------------------------------------------------------------------------

def test_claude_partial_stream_gives_deltas_without_duplicate_text():
    events, out = stream("claude", "stream-json-partial")
    assert events[0].type == "init" and events[0].content["backend_session_id"]
    messages = [e.content["text"] for e in events if e.type == "message"]
    assert messages == ["Hello f", "rom stub"]
    assert out.text == "Hello from stub" and out.error is None and out.token_usage.output_tokens == 5


def test_claude_stream_tool_use_and_result():
    events, out = stream("claude", "stream-json-tool")
    kinds = [e.type for e in events]
    assert kinds.index("tool_use") < kinds.index("tool_result") < kinds.index("message")
    tool = next(e for e in events if e.type == "tool_use")
    assert tool.content["tool_name"] == "Bash" and tool.content["input"]["command"] == "echo stub-tool-ran"
    assert next(e for e in events if e.type == "tool_result").content["output"] == "stub-tool-ran"


def test_claude_stream_error():
    events, out = stream("claude", "error-500-stream-json")
    assert out.error and "500" in out.error
    assert [e.type for e in events][-1] == "error"


def test_codex_stream_emits_agent_message():
    events, out = stream("codex", "exec-json-model")
    assert [e.content["text"] for e in events if e.type == "message"] == ["Hello from stub"]


def test_codex_stream_command_items():
    events, _ = stream("codex", "item-command-ok")
    use = next(e for e in events if e.type == "tool_use")
    result = next(e for e in events if e.type == "tool_result")
    assert "echo hello-from-shell" in use.content["input"]["command"]
    assert result.content["output"].startswith("hello-from-shell") and result.content["is_error"] is False


def test_codex_reasoning_is_thinking():
    events, _ = stream("codex", "item-reasoning")
    assert any(e.type == "thinking" for e in events)


def test_gemini_stream_deltas_skip_user_echo():
    events, out = stream("gemini", "stream-json")
    assert [e.content["text"] for e in events if e.type == "message"] == ["Hello f", "rom stub"]
    assert out.text == "Hello from stub" and out.backend_session_id


def test_gemini_stream_tool():
    events, _ = stream("gemini", "stream-json-tool")
    assert next(e for e in events if e.type == "tool_use").content["tool_name"] == "list_directory"


@pytest.mark.parametrize("backend,name,tool", [("claude", "stream-json-bash-daemon", "Bash"),
                                                ("codex", "exec-json-command-daemon", "shell"),
                                                ("gemini", "stream-json-shell-daemon", "run_shell_command")])
def test_shell_tool_call_in_the_unguarded_modes(backend, name, tool):
    """Captured with the stub's tool mode (claude bypassPermissions, codex danger-full-access, gemini
    yolo): the shell command the model asked for, its output, then the reply."""
    events, out = stream(backend, name)
    use = next(e for e in events if e.type == "tool_use")
    result = next(e for e in events if e.type == "tool_result")
    assert use.content["tool_name"] == tool and "setsid sleep 600." in use.content["input"]["command"]
    assert result.content["output"].strip() == "started" and result.content["is_error"] is False
    assert out.text == "done" and out.error is None


def test_gemini_stream_error():
    events, out = stream("gemini", "error-401-stream-json")
    assert out.error == "API key not valid. Please pass a valid API key."
    assert events[-1].type == "error"


def test_non_json_noise_is_not_an_answer():
    parser = BACKENDS["claude"].stream_parser()
    assert parser.feed("some stray stderr text") == [] and parser.text == ""


# -- command lines ------------------------------------------------------------------------------------

SPECS = [
    RunSpec(prompt="p"),
    RunSpec(prompt="p", stream=True, model="m", resume_id="abc", ephemeral=True, system_prompt="s",
            approval_mode="auto", sandbox_mode="workspace", max_turns=3),
    RunSpec(prompt="p", approval_mode="always", sandbox_mode="read-only", extra=["--model", "x"]),
]


@pytest.mark.parametrize("name", sorted(BACKENDS))
@pytest.mark.parametrize("spec", SPECS, ids=["plain", "everything", "modes"])
def test_every_emitted_flag_exists_in_the_pinned_help(name, spec):
    invocation = BACKENDS[name].build(spec, f"/bin/{name}", allow_dangerous=False)
    flags = {a for a in invocation.argv[1:] if a.startswith("-") and a != "-"}
    hidden_but_documented = {"--max-turns"}  # claude: works in 2.1.197 and 2.1.330, see the CLI notes
    assert flags - help_flags(name) - hidden_but_documented == set()
    assert invocation.stdin_text.endswith("p")  # the prompt travels on stdin...
    assert "p" not in invocation.argv[1:] or name == "codex"  # ...never as an argument


def test_prompt_never_in_argv_even_if_it_looks_like_a_flag():
    for backend in BACKENDS.values():
        invocation = backend.build(RunSpec(prompt="--help"), "/bin/x", allow_dangerous=False)
        assert "--help" not in invocation.argv and invocation.stdin_text == "--help"


def test_resume_command_lines():
    spec = RunSpec(prompt="again", resume_id="T1", model="gpt-5.5")
    assert BACKENDS["claude"].build(spec, "claude", False).argv[3:7] == ["json", "--resume", "T1", "--model"]
    assert BACKENDS["codex"].build(spec, "codex", False).argv[-3:] == ["resume", "T1", "-"]
    assert "--resume" in BACKENDS["gemini"].build(spec, "gemini", False).argv


def test_unsupported_options_are_reported_not_passed():
    spec = RunSpec(prompt="p", sandbox_mode="read-only")
    invocation = BACKENDS["claude"].build(spec, "claude", False)
    assert any("sandbox" in note for note in invocation.notes)


@pytest.mark.parametrize("name,field", [("claude", "approval_mode"), ("gemini", "approval_mode"),
                                        ("codex", "sandbox_mode")])
def test_dangerous_modes_need_operator_opt_in(name, field):
    spec = RunSpec(prompt="p", **{field: "none" if field == "approval_mode" else "full"})
    with pytest.raises(UnsupportedOption) as info:
        BACKENDS[name].build(spec, name, allow_dangerous=False)
    assert info.value.field == field
    argv = BACKENDS[name].build(spec, name, allow_dangerous=True).argv
    assert any(a in argv for a in ("bypassPermissions", "yolo", "danger-full-access"))


@pytest.mark.parametrize("extra,where", [
    (["--dangerously-skip-permissions"], "extra[0]"),
    (["--model"], "extra[1]"),
    (["model"], "extra[0]"),
    (["--verbose=1"], "extra[0]"),
    (["--model", "x", "--settings", "{}"], "extra[2]"),
])
def test_extra_allowlist(extra, where):
    with pytest.raises(UnsupportedOption) as info:
        BACKENDS["claude"].check_extra(extra)
    assert info.value.field == where


def test_extra_allowlist_accepts_values():
    BACKENDS["claude"].check_extra(["--model", "sonnet", "--effort=low", "--verbose"])
    BACKENDS["codex"].check_extra(["-m", "gpt-5.5"])


def test_claude_prompt_starting_with_slash_is_not_a_slash_command():
    invocation = BACKENDS["claude"].build(RunSpec(prompt="/help me"), "claude", False)
    assert invocation.stdin_text == " /help me"
