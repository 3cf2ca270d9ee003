"""The fake CLIs in tests/fakes/ speak the real CLIs' formats (compared with tests/fixtures/) and honour
their knobs (tests/fakes/README.md)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import alive, wait_for, wait_gone

ROOT = Path(__file__).resolve().parent
FAKES = ROOT / "fakes"
FIXTURES = ROOT / "fixtures"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and signals")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def env(tmp_path):
    """A clean environment for the fakes: private HOME, session store and log, no inherited knobs."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "CLINVK_TEST_"))}
    for key in ("GEMINI_CLI_TRUST_WORKSPACE", "GEMINI_CLI_NO_RELAUNCH", "COLORTERM", "NO_COLOR",
                "ANTHROPIC_MODEL", "GEMINI_MODEL", "IS_SANDBOX"):
        base.pop(key, None)
    home = tmp_path / "home"
    home.mkdir()
    base.update(HOME=str(home), FAKE_CLI_HOME=str(tmp_path / "store"), FAKE_CLI_LOG=str(tmp_path / "log.jsonl"))
    return base


@pytest.fixture
def workdir(tmp_path):
    wd = tmp_path / "work"
    wd.mkdir()
    return wd


def run(backend, args, prompt="say hello", env=None, cwd=None, timeout=20):
    return subprocess.run([str(FAKES / backend), *args], input=None if prompt is None else prompt.encode(),
                          capture_output=True, env=env, cwd=cwd, timeout=timeout)


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.decode().splitlines() if x.strip()]


def fixture(backend, name) -> str:
    return (FIXTURES / backend / name).read_text(encoding="utf-8")


def fixture_jsonl(backend, name) -> list[dict]:
    return [json.loads(x) for x in fixture(backend, name).splitlines() if x.strip()]


# Dicts keyed by model / tool name: compare their values, not their keys.
_NAMED = {"modelUsage", "model_usage_since_last_result", "models", "roles", "byName"}


def shape(obj, key=None):
    """The ordered structure of a JSON value: key paths and JSON types, not the values."""
    if isinstance(obj, dict):
        if key in _NAMED:
            return {"*": sorted({json.dumps(shape(v), sort_keys=True) for v in obj.values()})}
        return [(k, shape(v, k)) for k, v in obj.items()]
    if isinstance(obj, list):
        return ["list", sorted({json.dumps(shape(v), sort_keys=True) for v in obj})]
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, (int, float)):
        return "number"
    return type(obj).__name__


def assert_same_shape(fake, real):
    assert shape(fake) == shape(real)


def log_lines(env) -> list[dict]:
    path = Path(env["FAKE_CLI_LOG"])
    return jsonl(path.read_bytes()) if path.exists() else []


def is_uuid(value, version=None):
    parts = value.split("-")
    ok = [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdef" for c in "".join(parts))
    return ok and (version is None or parts[2][0] == str(version))


def tokens_in(prompt, turn):
    return 10 * turn + len(prompt) // 4


def start(backend, args, prompt, env, cwd=None):
    proc = subprocess.Popen([str(FAKES / backend), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
    proc.stdin.write(prompt.encode())
    proc.stdin.close()
    return proc


def wait_for_log(env, n=1, timeout=5.0):
    assert wait_for(lambda: len(log_lines(env)) >= n, timeout, step=0.01), "fake never logged its invocation"
    return log_lines(env)


CLAUDE_JSON = ["-p", "--output-format", "json"]
CLAUDE_STREAM = ["-p", "--output-format", "stream-json", "--verbose"]
CODEX = ["exec", "--json", "--skip-git-repo-check"]
GEMINI_TRUST = ["--skip-trust"]


# --------------------------------------------------------------------------- help texts


@pytest.mark.parametrize("data,fx", [
    ("claude-help.txt", "claude/help.txt"), ("codex-help.txt", "codex/help.txt"),
    ("codex-exec-help.txt", "codex/exec-help.txt"), ("codex-exec-resume-help.txt", "codex/exec-resume-help.txt"),
    ("gemini-help.txt", "gemini/help.txt")])
def test_help_texts_are_the_real_ones(data, fx):
    assert (FAKES / "data" / data).read_text() == (FIXTURES / fx).read_text()


def _long_flags(text):
    """The long option names defined by a --help text (not the ones merely mentioned in prose)."""
    flags = set()
    for m in re.finditer(r"^ {2,6}(?:-\w, )?(--[\w-]+)(?:, (--[\w-]+))?", text, re.M):
        flags.update(f for f in m.groups() if f)
    return flags


@pytest.mark.parametrize("backend,helpfile,args", [
    ("claude", "claude/help.txt", ["-p"]),
    ("codex", "codex/exec-help.txt", ["exec", "--skip-git-repo-check"]),
    ("codex", "codex/exec-resume-help.txt", ["exec", "--skip-git-repo-check", "resume"]),
    ("gemini", "gemini/help.txt", ["--skip-trust"]),
])
def test_every_documented_flag_is_accepted_as_a_flag(backend, helpfile, args, env, workdir):
    """No flag the real --help lists is rejected as unknown (values are given where needed)."""
    flags = _long_flags(fixture(*helpfile.split("/")))
    flags -= {"--help", "--version"}
    for flag in sorted(flags):
        res = run(backend, args + [flag, "x"] if backend != "gemini" else args + [flag], env=env, cwd=workdir)
        err = res.stderr.decode()
        assert "unknown option" not in err and "unexpected argument '" + flag not in err \
            and "Unknown argument" not in err, (flag, err)


@pytest.mark.parametrize("backend,args,out", [
    ("claude", ["--version"], fixture("claude", "version.txt").splitlines()[0] + "\n"),
    ("codex", ["--version"], "codex-cli 0.169.0\n"),
    ("gemini", ["--version"], "0.61.0\n"),
])
def test_version(backend, args, out, env):
    res = run(backend, args, prompt=None, env=env)
    assert res.returncode == 0 and res.stdout.decode() == out


# --------------------------------------------------------------------------- claude


def test_claude_json_has_the_real_result_shape(env, workdir):
    res = run("claude", CLAUDE_JSON, "say hello", env=env, cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    out = json.loads(res.stdout)
    assert res.stdout.endswith(b"}\n") and res.stdout.count(b"\n") == 1
    assert_same_shape(out, json.loads(fixture("claude", "print-json.stdout")))
    assert out["type"] == "result" and out["subtype"] == "success" and out["is_error"] is False
    assert out["result"] == "echo: say hello"
    assert is_uuid(out["session_id"], 4)
    assert out["usage"]["input_tokens"] == tokens_in("say hello", 1)
    assert out["usage"]["output_tokens"] == len("echo: say hello") // 4
    assert list(out["modelUsage"]) == ["claude-opus-5-5"]


def test_claude_text(env, workdir):
    res = run("claude", ["-p"], "--help", env=env, cwd=workdir)
    assert res.returncode == 0 and res.stdout == b"echo: --help\n"


def test_claude_prompt_arrives_intact(env, workdir):
    prompt = "line one\n  \"quoted\" ünïcödé \t tab\n--not-a-flag\n"
    out = json.loads(run("claude", CLAUDE_JSON, prompt, env=env, cwd=workdir).stdout)
    assert out["result"] == "echo: " + prompt


def test_claude_stream_json_matches_the_real_events(env, workdir):
    res = run("claude", CLAUDE_STREAM, "hi", env=env, cwd=workdir)
    assert res.returncode == 0
    events = jsonl(res.stdout)
    real = fixture_jsonl("claude", "stream-json.stdout")
    assert [(e["type"], e.get("subtype")) for e in events] == [(e["type"], e.get("subtype")) for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    assert events[0]["cwd"] == str(workdir)
    assert events[1]["message"]["content"] == [{"type": "text", "text": "echo: hi"}]
    assert events[-1]["result"] == "echo: hi"
    assert len({e["session_id"] for e in events}) == 1


def test_claude_partial_messages_match_the_real_events(env, workdir):
    events = jsonl(run("claude", CLAUDE_STREAM + ["--include-partial-messages"], "hi there", env=env,
                       cwd=workdir).stdout)
    real = fixture_jsonl("claude", "stream-json-partial.stdout")

    def kinds(evs):
        return [(e["type"], e.get("subtype") or e.get("event", {}).get("type")) for e in evs]

    assert kinds(events) == kinds(real)
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    deltas = [e["event"]["delta"]["text"] for e in events if e.get("event", {}).get("type") == "content_block_delta"]
    assert "".join(deltas) == "echo: hi there"


def test_claude_chunks_and_chunk_delay(env, workdir):
    proc = start("claude", CLAUDE_STREAM + ["--include-partial-messages"], "abcdefghij FAKE_CHUNKS=4 "
                 "FAKE_CHUNK_DELAY=0.15", env, workdir)
    stamps, deltas = [], []
    for raw in proc.stdout:
        ev = json.loads(raw)
        if ev.get("event", {}).get("type") == "content_block_delta":
            stamps.append(time.monotonic())
            deltas.append(ev["event"]["delta"]["text"])
    assert proc.wait(10) == 0
    assert len(deltas) == 4 and "".join(deltas) == "echo: abcdefghij FAKE_CHUNKS=4 FAKE_CHUNK_DELAY=0.15"
    assert all(b - a >= 0.1 for a, b in zip(stamps, stamps[1:]))


def test_claude_stream_json_requires_verbose(env, workdir):
    res = run("claude", ["-p", "--output-format", "stream-json"], env=env, cwd=workdir)
    assert res.returncode == 1 and res.stdout == b""
    assert res.stderr.decode() == fixture("claude", "stream-json-noverbose.stderr")


@pytest.mark.parametrize("args,stderr", [
    (["--x"], "error: unknown option '--x'\n"),
    (["--frobnicate", "json"], "error: unknown option '--frobnicate'\n"),
    (["--modle", "m"], "error: unknown option '--modle'\n(Did you mean --model?)\n"),
    (["--print=1"], "error: unknown option '--print=1'\n(Did you mean --print?)\n"),
    (["--output-format", "xml"], "error: option '--output-format <format>' argument 'xml' is invalid. "
                                 "Allowed choices are text, json, stream-json.\n"),
    (["--model"], "error: option '--model <model>' argument missing\n"),
])
def test_claude_rejects_bad_flags_like_commander(args, stderr, env, workdir):
    res = run("claude", ["-p", *args], env=env, cwd=workdir)
    assert (res.returncode, res.stdout, res.stderr.decode()) == (1, b"", stderr)


def test_claude_accepts_what_clinvk_passes(env, workdir, tmp_path):
    args = ["-p", "--output-format", "json", "--verbose", "--include-partial-messages", "--model", "sonnet",
            "--permission-mode", "acceptEdits", "--max-turns", "3", "--system-prompt", "be brief",
            "--append-system-prompt", "really", "--allowedTools", "Bash,Read", "--disallowedTools", "Write",
            "--add-dir", str(tmp_path), "--no-session-persistence"]
    res = run("claude", args, env=env, cwd=workdir)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out["modelUsage"]) == ["claude-sonnet-5-5"] and res.stderr == b""


def test_claude_unknown_model_warns_on_stderr(env, workdir):
    res = run("claude", CLAUDE_JSON + ["--model", "claude-stub-model-x"], env=env, cwd=workdir)
    assert res.returncode == 0
    assert res.stderr == b'[claude-code:unrecognized_model] {"model":"claude-stub-model-x","query_source":"sdk"}\n'


def test_claude_resume_continues_the_session(env, workdir):
    first = json.loads(run("claude", CLAUDE_JSON, "one", env=env, cwd=workdir).stdout)
    sid = first["session_id"]
    second = json.loads(run("claude", CLAUDE_JSON + ["--resume", sid], "two", env=env, cwd=workdir).stdout)
    assert_same_shape(second, json.loads(fixture("claude", "resume-json.stdout")))
    assert second["session_id"] == sid and second["result"] == "echo: two"
    assert second["usage"]["input_tokens"] == tokens_in("two", 2)
    cumulative = tokens_in("one", 1) + tokens_in("two", 2)
    assert second["modelUsage"]["claude-opus-5-5"]["inputTokens"] == cumulative
    assert second["total_cost_usd"] > first["total_cost_usd"]
    third = json.loads(run("claude", CLAUDE_JSON + ["-r", sid], "three", env=env, cwd=workdir).stdout)
    assert third["usage"]["input_tokens"] == tokens_in("three", 3)
    stored = json.loads((Path(env["FAKE_CLI_HOME"]) / "claude" / f"{sid}.json").read_text())
    assert [t["prompt"] for t in stored["turns"]] == ["one", "two", "three"]


def test_claude_resume_unknown_session(env, workdir):
    sid = "00000000-0000-4000-8000-000000000000"
    res = run("claude", CLAUDE_JSON + ["--resume", sid], env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (1, b"")
    assert res.stderr.decode() == fixture("claude", "resume-nonexistent-text.stderr")
    res = run("claude", CLAUDE_JSON + ["--resume", "not-a-uuid"], env=env, cwd=workdir)
    assert res.returncode == 1 and res.stderr.decode() == fixture("claude", "resume-notuuid.stderr")


def test_claude_no_session_persistence(env, workdir):
    out = json.loads(run("claude", CLAUDE_JSON + ["--no-session-persistence"], env=env, cwd=workdir).stdout)
    res = run("claude", CLAUDE_JSON + ["--resume", out["session_id"]], env=env, cwd=workdir)
    assert res.returncode == 1
    assert res.stderr.decode() == f"No conversation found with session ID: {out['session_id']}\n"


def test_claude_session_id(env, workdir):
    sid = "11111111-2222-4333-8444-555555555555"
    out = json.loads(run("claude", CLAUDE_JSON + ["--session-id", sid], env=env, cwd=workdir).stdout)
    assert out["session_id"] == sid
    res = run("claude", CLAUDE_JSON + ["--session-id", sid], env=env, cwd=workdir)
    assert res.returncode == 1 and res.stderr.decode() == fixture("claude", "session-id-dup.stderr")


def test_claude_empty_input(env, workdir):
    res = run("claude", CLAUDE_JSON, "", env=env, cwd=workdir)
    assert res.returncode == 1 and res.stderr.decode() == fixture("claude", "no-prompt.stderr")


@pytest.mark.parametrize("kind,fx", [("401", "error-401-json"), ("429", "error-429-json"), ("500", "error-500-json")])
def test_claude_api_failures_json(kind, fx, env, workdir):
    res = run("claude", CLAUDE_JSON, f"hi FAKE_FAIL={kind}", env=env, cwd=workdir)
    real = json.loads(fixture("claude", f"{fx}.stdout"))
    out = json.loads(res.stdout)
    assert res.returncode == 1 and res.stderr == b""
    assert_same_shape(out, real)
    for key in ("is_error", "subtype", "api_error_status", "api_error_type", "result", "terminal_reason"):
        assert out[key] == real[key], key


@pytest.mark.parametrize("kind", ["401", "429", "500"])
def test_claude_api_failures_text(kind, env, workdir):
    res = run("claude", ["-p"], "hi", env=dict(env, FAKE_CLI_FAIL=kind), cwd=workdir)
    assert res.returncode == 1
    if kind != "429":
        name = "error-401-text" if kind == "401" else "error-500-text"
        assert res.stdout.decode() == fixture("claude", f"{name}.stdout")
    else:
        assert res.stdout.decode() == json.loads(fixture("claude", "error-429-json.stdout"))["result"] + "\n"


def test_claude_api_failure_stream_json(env, workdir):
    res = run("claude", CLAUDE_STREAM, "hi FAKE_FAIL=500", env=env, cwd=workdir)
    events, real = jsonl(res.stdout), fixture_jsonl("claude", "error-500-stream-json.stdout")
    assert res.returncode == 1
    assert [(e["type"], e.get("subtype")) for e in events] == [(e["type"], e.get("subtype")) for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    assert events[-2]["message"]["content"][0]["text"] == real[-2]["message"]["content"][0]["text"]
    res = run("claude", CLAUDE_STREAM, "hi FAKE_FAIL=401", env=env, cwd=workdir)
    events = jsonl(res.stdout)
    assert [e.get("subtype") for e in events] == ["init", None, "success"]
    assert events[1]["error"] == "authentication_failed" and events[-1]["api_error_status"] == 401


def test_claude_tool_round_and_max_turns(env, workdir):
    events = jsonl(run("claude", CLAUDE_STREAM, "go FAKE_TOOL", env=env, cwd=workdir).stdout)
    real = fixture_jsonl("claude", "stream-json-tool.stdout")
    assert [e["type"] for e in events] == [e["type"] for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    assert events[-1]["num_turns"] == 2
    res = run("claude", CLAUDE_JSON + ["--max-turns", "1"], "go FAKE_TOOL", env=env, cwd=workdir)
    assert res.returncode == 1
    assert_same_shape(json.loads(res.stdout), json.loads(fixture("claude", "max-turns-1-tool.stdout")))


def test_claude_sigint_gives_the_aborted_result(env, workdir):
    proc = start("claude", CLAUDE_JSON, "wait FAKE_HANG", env, workdir)
    wait_for_log(env)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.stdout.read()
    assert proc.wait(5) == 0
    assert_same_shape(json.loads(out), json.loads(fixture("claude", "sigint-json.stdout")))


# --------------------------------------------------------------------------- codex


def test_codex_json_matches_the_real_events(env, workdir):
    res = run("codex", CODEX + ["-m", "gpt-5.5", "-"], "say hello", env=env, cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""  # `-`: no "Reading prompt from stdin..." note
    events, real = jsonl(res.stdout), fixture_jsonl("codex", "exec-json-model.stdout")
    assert [e["type"] for e in events] == [e["type"] for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    assert is_uuid(events[0]["thread_id"], 7)
    assert events[2]["item"] == {"id": "item_0", "type": "agent_message", "text": "echo: say hello"}
    assert events[3]["usage"]["input_tokens"] == tokens_in("say hello", 1)


def test_codex_unknown_model_adds_the_warning_item(env, workdir):
    events = jsonl(run("codex", CODEX + ["-m", "stub-model", "-"], env=env, cwd=workdir).stdout)
    real = fixture_jsonl("codex", "exec-json.stdout")
    assert [e["type"] for e in events] == [e["type"] for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    assert events[1]["item"]["message"] == real[1]["item"]["message"]


def test_codex_stdin_notes(env, workdir):
    res = run("codex", CODEX, "from stdin", env=env, cwd=workdir)
    assert res.stderr == b"Reading prompt from stdin...\n"
    assert jsonl(res.stdout)[2]["item"]["text"] == "echo: from stdin"
    res = run("codex", CODEX + ["arg prompt"], "piped", env=env, cwd=workdir)
    assert res.stderr == b"Reading additional input from stdin...\n"
    assert jsonl(res.stdout)[2]["item"]["text"] == "echo: arg prompt\n\n<stdin>\npiped\n</stdin>"
    res = run("codex", CODEX + ["-"], "   \n", env=env, cwd=workdir)
    assert (res.returncode, res.stdout, res.stderr) == (1, b"", b"No prompt provided via stdin.\n")


def test_codex_accepts_what_clinvk_passes(env, workdir, tmp_path):
    args = ["exec", "--json", "--skip-git-repo-check", "-m", "gpt-5.5", "-s", "workspace-write", "--ephemeral",
            "-C", str(workdir), "--add-dir", str(tmp_path), "-c", "model_reasoning_effort=low", "-"]
    res = run("codex", args, env=env, cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert log_lines(env)[0]["workdir"] == str(workdir)


def test_codex_resume(env, workdir):
    first = jsonl(run("codex", CODEX + ["-m", "gpt-5.5", "-"], "one", env=env, cwd=workdir).stdout)
    tid = first[0]["thread_id"]
    res = run("codex", CODEX + ["-m", "gpt-5.5", "resume", tid, "-"], "two", env=env, cwd=workdir)
    events, real = jsonl(res.stdout), fixture_jsonl("codex", "resume-json.stdout")
    assert res.returncode == 0 and res.stderr == b""
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    assert events[0]["thread_id"] == tid
    assert events[2]["item"]["text"] == "echo: two"
    # usage is cumulative over the thread, like the real codex
    assert events[-1]["usage"]["input_tokens"] == tokens_in("one", 1) + tokens_in("two", 2)


def test_codex_resume_unknown_or_ephemeral(env, workdir):
    tid = "00000000-0000-0000-0000-000000000000"
    res = run("codex", CODEX + ["resume", tid, "-"], env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (1, b"")
    real = fixture("codex", "resume-unknown-id.stderr").splitlines(keepends=True)[-1]
    assert res.stderr.decode() == real
    first = jsonl(run("codex", CODEX + ["--ephemeral", "-"], env=env, cwd=workdir).stdout)
    res = run("codex", CODEX + ["resume", first[0]["thread_id"], "-"], env=env, cwd=workdir)
    assert res.returncode == 1 and b"no rollout found for thread id" in res.stderr


def test_codex_git_check(env, workdir):
    res = run("codex", ["exec", "--json", "-"], env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (1, b"")
    assert res.stderr.decode() == fixture("codex", "nogit-refused.stderr").splitlines(keepends=True)[-1]
    (workdir / ".git").mkdir()
    sub = workdir / "sub"
    sub.mkdir()
    assert run("codex", ["exec", "--json", "-"], env=env, cwd=sub).returncode == 0


def test_codex_rejects_unknown_flags_like_clap(env, workdir):
    res = run("codex", CODEX + ["--full-auto", "-"], env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (2, b"")
    real = "".join(fixture("codex", "flag-full-auto.stderr").splitlines(keepends=True)[1:])  # minus a WARNING
    assert res.stderr.decode() == real
    res = run("codex", CODEX + ["-s", "bogus", "-"], env=env, cwd=workdir)
    assert res.returncode == 2 and res.stderr.decode() == (
        "error: invalid value 'bogus' for '--sandbox <SANDBOX_MODE>'\n"
        "  [possible values: read-only, workspace-write, danger-full-access]\n\n"
        "For more information, try '--help'.\n")
    # -s is an exec option, not a resume option
    res = run("codex", CODEX + ["resume", "-s", "read-only", "x", "-"], env=env, cwd=workdir)
    assert res.returncode == 2 and "Usage: codex exec resume" in res.stderr.decode()


@pytest.mark.parametrize("kind", ["401", "429", "500"])
def test_codex_api_failures(kind, env, workdir):
    res = run("codex", CODEX + ["-m", "gpt-5.5", "-"], f"hi FAKE_FAIL={kind}", env=env, cwd=workdir)
    events, real = jsonl(res.stdout), fixture_jsonl("codex", f"error-{kind}.stdout")
    assert res.returncode == 1
    assert events[1:] == real[1:]
    assert events[0]["type"] == "thread.started"


def test_codex_chunks_are_agent_message_items(env, workdir):
    events = jsonl(run("codex", CODEX + ["-"], "abcdefgh FAKE_CHUNKS=3", env=env, cwd=workdir).stdout)
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    assert [i["id"] for i in items] == ["item_0", "item_1", "item_2"]
    assert "".join(i["text"] for i in items) == "echo: abcdefgh FAKE_CHUNKS=3"


def test_codex_tool_items(env, workdir):
    events = jsonl(run("codex", CODEX + ["-"], "run FAKE_TOOL", env=env, cwd=workdir).stdout)
    real = fixture_jsonl("codex", "item-command-ok.stdout")
    assert [e["type"] for e in events] == [e["type"] for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)


def test_codex_text_mode(env, workdir):
    res = run("codex", ["exec", "--skip-git-repo-check", "-"], "hi", env=env, cwd=workdir)
    assert res.returncode == 0 and res.stdout == b"echo: hi\n"
    assert res.stderr.startswith(b"OpenAI Codex v0.169.0\n--------\n")


# --------------------------------------------------------------------------- gemini


def test_gemini_json_matches_the_real_output(env, workdir):
    res = run("gemini", ["-o", "json", "-m", "gemini-2.5-flash"] + GEMINI_TRUST, "say hello", env=env, cwd=workdir)
    assert res.returncode == 0
    assert not res.stdout.endswith(b"\n")  # pretty-printed, no trailing newline
    out = json.loads(res.stdout)
    real_text = fixture("gemini", "model-flag.stdout")
    assert_same_shape(out, json.loads(real_text))
    assert res.stdout.decode().splitlines()[:3] == real_text.splitlines()[:1] + [
        f'  "session_id": "{out["session_id"]}",', '  "response": "echo: say hello",']
    assert out["stats"]["models"]["gemini-2.5-flash"]["tokens"]["input"] == tokens_in("say hello", 1)
    assert res.stderr.decode() == fixture("gemini", "json.stderr")


def test_gemini_auto_model_lists_router_and_main(env, workdir):
    out = json.loads(run("gemini", ["-o", "json"] + GEMINI_TRUST, env=env, cwd=workdir).stdout)
    real = json.loads(fixture("gemini", "json.stdout"))
    assert_same_shape(out, real)
    assert list(out["stats"]["models"]) == list(real["stats"]["models"])


def test_gemini_stream_json_matches_the_real_events(env, workdir):
    res = run("gemini", ["-o", "stream-json", "-m", "gemini-2.5-flash"] + GEMINI_TRUST, "say hello", env=env,
              cwd=workdir)
    events, real = jsonl(res.stdout), fixture_jsonl("gemini", "stream-json.stdout")
    assert res.returncode == 0
    assert [(e["type"], e.get("role")) for e in events] == [(e["type"], e.get("role")) for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    assert events[1]["content"] == "say hello"
    assert "".join(e["content"] for e in events if e.get("role") == "assistant") == "echo: say hello"
    assert events[0]["model"] == "gemini-2.5-flash"


def test_gemini_text_and_prompt_flag(env, workdir):
    res = run("gemini", GEMINI_TRUST, "--help", env=env, cwd=workdir)
    assert res.returncode == 0 and res.stdout == b"echo: --help\n"
    res = run("gemini", GEMINI_TRUST + ["-p", "question"], "context", env=env, cwd=workdir)
    assert res.stdout == b"echo: context\n\nquestion\n"


def test_gemini_rejects_unknown_arguments_like_yargs(env, workdir):
    help_text = fixture("gemini", "help.txt")
    res = run("gemini", ["-o", "json", "--x"] + GEMINI_TRUST, env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (1, b"")
    assert res.stderr.decode() == "Unknown argument: x\n" + help_text
    res = run("gemini", ["--foo-bar", "--baz"] + GEMINI_TRUST, env=env, cwd=workdir)
    assert res.stderr.decode().splitlines()[0] == "Unknown arguments: foo-bar, fooBar, baz"
    res = run("gemini", ["--approval-mode", "bogus", "-m", "gemini-2.5-flash", "-o", "json", "-p", "say hello"],
              env=env, cwd=workdir)
    assert res.returncode == 1 and res.stderr.decode() == fixture("gemini", "approval-bogus.stderr")


def test_gemini_accepts_what_clinvk_passes(env, workdir, tmp_path):
    args = ["-o", "json", "-m", "gemini-2.5-flash", "--approval-mode", "auto_edit", "--skip-trust",
            "--include-directories", f"{tmp_path},{workdir}"]
    res = run("gemini", args, env=env, cwd=workdir)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("kind,rc", [("401", 145), ("500", 244), ("429", 173)])
def test_gemini_api_failures(kind, rc, env, workdir):
    args = ["-m", "gemini-2.5-flash"] + GEMINI_TRUST
    assert int(fixture("gemini", f"error-{kind}.exitcode")) == rc
    res = run("gemini", args + ["-o", "json"], f"FAKE_FAIL={kind}", env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (rc, b"")
    err, real = res.stderr.decode(), fixture("gemini", f"error-{kind}.stderr")
    block, real_block = err[err.rindex("\n{\n") + 1:], real[real.rindex("\n{\n") + 1:]
    fake_err, real_err = json.loads(block), json.loads(real_block)
    assert_same_shape(fake_err, real_err)
    assert fake_err["error"] == real_err["error"]
    # the same stderr lines apart from the report path/timestamp and the session id
    assert len(err.splitlines()) == len(real.splitlines())

    res = run("gemini", args + ["-o", "stream-json"], f"FAKE_FAIL={kind}", env=env, cwd=workdir)
    events, real_events = jsonl(res.stdout), fixture_jsonl("gemini", f"error-{kind}-stream-json.stdout")
    assert res.returncode == rc
    for fake_ev, real_ev in zip(events, real_events):
        assert_same_shape(fake_ev, real_ev)
    assert events[-1]["error"] == real_events[-1]["error"]

    res = run("gemini", args, f"FAKE_FAIL={kind}", env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (1, b"")
    assert res.stderr.decode().endswith("An unexpected critical error occurred:[object Object]\n")
    if kind == "401":
        real = fixture("gemini", "error-401-text.stderr").splitlines()
        fake = res.stderr.decode().splitlines()
        assert len(fake) == len(real) and fake[:3] == real[:3] and fake[4:] == real[4:]


def test_gemini_resume_and_sessions(env, workdir):
    args = ["-o", "json", "-m", "gemini-2.5-flash"] + GEMINI_TRUST
    first = json.loads(run("gemini", args, "first prompt", env=env, cwd=workdir).stdout)
    sid = first["session_id"]
    second = json.loads(run("gemini", args + ["--resume", sid], "followup", env=env, cwd=workdir).stdout)
    assert second["session_id"] == sid
    assert second["stats"]["models"]["gemini-2.5-flash"]["tokens"]["input"] == tokens_in("followup", 2)
    latest = json.loads(run("gemini", args + ["-r", "latest"], "again", env=env, cwd=workdir).stdout)
    assert latest["session_id"] == sid
    listing = run("gemini", ["--list-sessions"], None, env=env, cwd=workdir).stdout.decode()
    assert listing == f"\nAvailable sessions for this project (1):\n  1. first prompt (Just now) [{sid}]\n"
    real = fixture("gemini", "list-sessions.stdout").splitlines()
    assert listing.splitlines()[:2] == real[:1] + [real[1].replace("(2)", "(1)")]
    missing = "99999999-0000-4000-8000-000000000000"
    res = run("gemini", args + ["--resume", missing], env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (42, b"")
    assert res.stderr.decode().splitlines()[0] == fixture("gemini", "resume-missing.stderr").splitlines()[0]
    res = run("gemini", ["--delete-session", sid], None, env=env, cwd=workdir)
    assert res.returncode == 0 and res.stdout == b"Deleted session 1: first prompt (Just now)"
    res = run("gemini", ["--list-sessions"], None, env=env, cwd=workdir)
    assert res.stdout == b"No previous sessions found for this project."


def test_gemini_session_id_and_conflicts(env, workdir):
    sid = "11111111-2222-4333-8444-555555555555"
    args = ["-o", "json", "-m", "gemini-2.5-flash"] + GEMINI_TRUST
    assert json.loads(run("gemini", args + ["--session-id", sid], env=env, cwd=workdir).stdout)["session_id"] == sid
    res = run("gemini", args + ["--session-id", sid], env=env, cwd=workdir)
    assert res.returncode == 42 and res.stderr.decode() == fixture("gemini", "session-id-duplicate.stderr")
    res = run("gemini", args + ["--resume", sid, "--session-id", sid], env=env, cwd=workdir)
    assert res.returncode == 1 and res.stderr.decode().startswith("The flags --resume, --session-id")


def test_gemini_trust_and_empty_input(env, workdir):
    res = run("gemini", ["-o", "json"], env=env, cwd=workdir)
    assert (res.returncode, res.stdout) == (55, b"")
    assert res.stderr.decode() == fixture("gemini", "error-untrusted-text.stderr")
    assert run("gemini", ["-o", "json"], env=dict(env, GEMINI_CLI_TRUST_WORKSPACE="true"), cwd=workdir).returncode == 0
    res = run("gemini", GEMINI_TRUST, "", env=env, cwd=workdir)
    assert res.returncode == 42 and res.stderr.decode() == fixture("gemini", "empty-prompt.stderr")


def test_gemini_tool_events(env, workdir):
    args = ["-m", "gemini-2.5-flash"] + GEMINI_TRUST
    events = jsonl(run("gemini", args + ["-o", "stream-json"], "FAKE_TOOL", env=env, cwd=workdir).stdout)
    real = fixture_jsonl("gemini", "stream-json-tool.stdout")
    assert [e["type"] for e in events] == [e["type"] for e in real]
    for fake_ev, real_ev in zip(events, real):
        assert_same_shape(fake_ev, real_ev)
    out = json.loads(run("gemini", args + ["-o", "json"], "FAKE_TOOL", env=env, cwd=workdir).stdout)
    assert_same_shape(out, json.loads(fixture("gemini", "json-tool.stdout")))


# --------------------------------------------------------------------------- common knobs

STREAM_ARGS = {
    "claude": CLAUDE_STREAM,
    "codex": CODEX + ["-"],
    "gemini": ["-o", "stream-json"] + GEMINI_TRUST,
}
INIT_LINES = {"claude": 1, "codex": 2, "gemini": 2}


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_reply_override_and_big_output(backend, env, workdir):
    args = {"claude": CLAUDE_JSON, "codex": CODEX + ["-"], "gemini": ["-o", "json"] + GEMINI_TRUST}[backend]

    def reply(res):
        if backend == "claude":
            return json.loads(res.stdout)["result"]
        if backend == "gemini":
            return json.loads(res.stdout)["response"]
        return "".join(e["item"]["text"] for e in jsonl(res.stdout) if e["type"] == "item.completed")

    assert reply(run(backend, args, "x", env=dict(env, FAKE_CLI_REPLY="fixed"), cwd=workdir)) == "fixed"
    big = reply(run(backend, args, "x FAKE_BIG=200000", env=env, cwd=workdir))
    assert len(big.encode()) == 200000
    # prompt words win over the environment
    assert len(reply(run(backend, args, "x FAKE_BIG=10", env=dict(env, FAKE_CLI_BIG_OUTPUT="99"), cwd=workdir))) == 10


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_delay_comes_after_the_init_lines(backend, env, workdir):
    t0 = time.monotonic()
    proc = start(backend, STREAM_ARGS[backend], "hi FAKE_DELAY=0.5", env, workdir)
    first = proc.stdout.readline()
    t_first = time.monotonic() - t0
    rest = proc.stdout.read()
    t_end = time.monotonic() - t0
    assert proc.wait(5) == 0
    assert json.loads(first)
    assert t_first < 0.45 <= t_end
    assert rest


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_crash(backend, env, workdir):
    res = run(backend, STREAM_ARGS[backend], "FAKE_FAIL=crash", env=env, cwd=workdir)
    assert res.returncode == 3
    assert res.stderr.decode().splitlines()[-1] == f"fake {backend}: simulated crash (FAKE_FAIL=crash)"
    assert len(jsonl(res.stdout)) == INIT_LINES[backend]


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_bad_knob_value(backend, env, workdir):
    res = run(backend, STREAM_ARGS[backend], "FAKE_FAIL=teapot", env=env, cwd=workdir)
    assert res.returncode == 3 and b"unknown FAKE_FAIL kind" in res.stderr


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_hang_then_sigterm(backend, env, workdir):
    proc = start(backend, STREAM_ARGS[backend], "wait FAKE_HANG", env, workdir)
    lines = [proc.stdout.readline() for _ in range(INIT_LINES[backend])]
    assert all(json.loads(x) for x in lines)
    proc.terminate()
    assert proc.wait(5) == -signal.SIGTERM


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_ignore_term_needs_sigkill_and_child_shares_the_group(backend, env, workdir):
    proc = start(backend, STREAM_ARGS[backend], "FAKE_HANG FAKE_IGNORE_TERM FAKE_SPAWN_CHILD", env, workdir)
    try:
        for _ in range(INIT_LINES[backend]):
            proc.stdout.readline()
        rec = wait_for_log(env)[0]
        child = rec["child_pid"]
        assert child and rec["pid"] == proc.pid and rec["pgid"] == os.getpgid(proc.pid) == proc.pid
        assert os.getpgid(child) == proc.pid
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.3)
        assert proc.poll() is None  # SIGTERM ignored
        proc.kill()
        assert proc.wait(5) == -signal.SIGKILL
        assert alive(child)  # the grandchild survives its parent...
        os.killpg(proc.pid, signal.SIGKILL)  # ...until the whole group is killed
        assert wait_gone(child, within=5)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
        proc.stderr.close()


def test_gemini_relaunch_parent_ignores_sigterm(env, workdir):
    env = dict(env, FAKE_GEMINI_RELAUNCH="1")
    proc = start("gemini", STREAM_ARGS["gemini"], "FAKE_HANG", env, workdir)
    try:
        proc.stdout.readline()
        rec = wait_for_log(env)[0]
        assert rec["relaunch_parent_pid"] == proc.pid and rec["pid"] != proc.pid
        proc.terminate()
        time.sleep(0.3)
        assert proc.poll() is None and alive(rec["pid"])
        os.killpg(proc.pid, signal.SIGTERM)  # the group: the child dies, then the parent exits
        assert proc.wait(5) == 128 + signal.SIGTERM
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
        proc.stderr.close()
    # GEMINI_CLI_NO_RELAUNCH=true turns it off, as in the real CLI
    res = run("gemini", ["-o", "json"] + GEMINI_TRUST, env=dict(env, GEMINI_CLI_NO_RELAUNCH="true"), cwd=workdir)
    assert res.returncode == 0


def test_log_records_each_invocation(env, workdir):
    env = dict(env, CLINVK_TEST_CASE="log", UNRELATED="x")
    run("claude", CLAUDE_JSON, "first", env=env, cwd=workdir)
    run("codex", CODEX + ["-"], "second", env=env, cwd=workdir)
    run("gemini", ["-o", "json", "--nope"], "third", env=env, cwd=workdir)
    recs = log_lines(env)
    assert [r["backend"] for r in recs] == ["claude", "codex", "gemini"]
    claude, codex, gemini = recs
    assert claude["argv"] == CLAUDE_JSON and claude["prompt"] == "first" and claude["cwd"] == str(workdir)
    assert isinstance(claude["pid"], int) and isinstance(claude["pgid"], int)
    assert claude["child_pid"] is None
    assert claude["env"]["CLINVK_TEST_CASE"] == "log" and "UNRELATED" not in claude["env"]
    assert set(claude["env"]) >= {"FAKE_CLI_LOG", "FAKE_CLI_HOME"}
    assert codex["prompt"] == "second" and is_uuid(codex["session_id"], 7)
    assert gemini["exit_code"] == 1 and gemini["prompt"] is None and "Unknown argument" in gemini["error"]


def test_per_backend_env_beats_generic_env(env, workdir):
    env = dict(env, FAKE_CLI_FAIL="500", FAKE_CLAUDE_FAIL="401")
    out = json.loads(run("claude", CLAUDE_JSON, env=env, cwd=workdir).stdout)
    assert out["api_error_status"] == 401
    out = jsonl(run("codex", CODEX + ["-"], env=env, cwd=workdir).stdout)
    assert out[-1]["error"]["message"] == fixture_jsonl("codex", "error-500.stdout")[-1]["error"]["message"]
    out = json.loads(run("claude", CLAUDE_JSON, "FAKE_FAIL=0", env=env, cwd=workdir).stdout)
    assert out["is_error"] is False
