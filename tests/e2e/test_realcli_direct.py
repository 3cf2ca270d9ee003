"""The genuine claude/codex/gemini CLIs, run directly (not via clinvk) against loopback stubs.

These tests pin down the exact command lines clinvk emits and prove they work with the pinned
CLI versions: the prompt goes in on stdin (a memfd, like clinvk does; never a pipe), the answer
comes back in the json / stream-json formats, sessions resume with their history, odd prompts
reach the model byte for byte, and a 300 KB prompt works.  They fail (never skip) when a CLI is
missing: run ``scripts/install-clis.sh``.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    from tests import realcli
except ImportError:  # plain `pytest` without the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests import realcli
from tests.stubs import anthropic_stub, gemini_stub, openai_responses_stub

pytestmark = pytest.mark.realcli

STUBS = {"claude": anthropic_stub, "codex": openai_responses_stub, "gemini": gemini_stub}
REPLY = "Hello from stub"
RUN_TIMEOUT = 90
ODD_PROMPTS = {
    "dash-help": "--help",
    "quotes-newlines-unicode":
        "say \"hi\" 'there' `x` $HOME \\n \\\\ %s {}\n\tline 2 ünïcödé 🚀 中文\n\n",
}


def command(backend, fmt="json", model=None, resume=None, ephemeral=False, sandbox=None):
    """The argv clinvk emits (without the executable); the prompt always comes on stdin."""
    model = model or realcli.E2E_MODELS[backend]
    if backend == "claude":
        argv = ["-p", "--output-format", fmt]
        if fmt == "stream-json":
            argv += ["--verbose", "--include-partial-messages"]
        argv += ["--model", model]
        if resume:
            argv += ["--resume", resume]
        if ephemeral:
            argv += ["--no-session-persistence"]
        return argv
    if backend == "codex":  # --json is already a stream: fmt does not change the command
        argv = ["exec", "--json", "--skip-git-repo-check", "-m", model]
        if sandbox:
            argv += ["-s", sandbox]
        if ephemeral:
            argv += ["--ephemeral"]
        if resume:
            argv += ["resume", resume]
        return argv + ["-"]
    argv = ["-o", fmt, "-m", model, "--skip-trust"]  # gemini: non-TTY stdin = headless, no -p
    if resume:
        argv += ["--resume", resume]
    return argv


def prompt_fd(text):
    """A memfd holding ``text``, positioned at 0 (what clinvk hands the CLI as stdin)."""
    fd = os.memfd_create("clinvk-prompt")
    view = memoryview(text.encode())
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class Result:
    """One CLI run: rc, stdout, stderr, elapsed seconds, and the parsed answer fields."""

    def __init__(self, backend, rc, stdout, stderr, elapsed):
        self.backend, self.rc, self.stdout, self.stderr, self.elapsed = (
            backend, rc, stdout, stderr, elapsed)
        self.events = []
        self.text = self.session_id = None
        if rc == 0:
            self._parse()

    def _parse(self):
        out = self.stdout
        if self.backend == "claude":
            lines = [json.loads(x) for x in out.splitlines() if x.strip()]
            self.events, final = lines, lines[-1]
            assert final["type"] == "result" and final["is_error"] is False, final
            self.text, self.session_id = final["result"], final["session_id"]
        elif self.backend == "codex":
            self.events = [json.loads(x) for x in out.splitlines() if x.strip()]
            types = [e["type"] for e in self.events]
            assert types[0] == "thread.started" and types[-1] == "turn.completed", types
            self.session_id = self.events[0]["thread_id"]
            self.text = [e["item"]["text"] for e in self.events if e["type"] == "item.completed"
                         and e["item"]["type"] == "agent_message"][-1]
        elif out.lstrip().startswith("{\n"):  # gemini json: one pretty-printed object
            final = json.loads(out)
            self.text, self.session_id = final["response"], final["session_id"]
        else:  # gemini stream-json
            self.events = [json.loads(x) for x in out.splitlines() if x.strip()]
            assert self.events[-1]["type"] == "result", self.events[-1]
            assert self.events[-1]["status"] == "success", self.events[-1]
            self.session_id = self.events[0]["session_id"]
            self.text = "".join(e["content"] for e in self.events
                                if e["type"] == "message" and e["role"] == "assistant")

    def __repr__(self):
        return "<%s rc=%s %.2fs stdout=%r stderr=%r>" % (
            self.backend, self.rc, self.elapsed, self.stdout[-800:], self.stderr[-800:])


class Harness:
    """A stub, a throwaway home and a work dir for one backend; :meth:`run` runs the CLI."""

    def __init__(self, backend, tmp_path):
        self.backend = backend
        self.exe = realcli.find_cli(backend)
        if not self.exe:
            pytest.fail("%s CLI not found: %s" % (backend, realcli.INSTALL_HINT), pytrace=False)
        self.stub = STUBS[backend].start_stub(mode="ok", reply=REPLY)
        self.home = tmp_path / "home"
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        self.env = realcli.cli_env(backend, self.stub.url, self.home)

    def run(self, prompt, argv=None, **opts):
        """Run the CLI with ``prompt`` on stdin; argv defaults to ``command(backend, **opts)``."""
        if self.backend == "gemini":
            realcli.clear_gemini_lock(self.home)
        argv = argv if argv is not None else command(self.backend, **opts)
        fd = prompt_fd(prompt)
        start = time.monotonic()
        try:
            proc = subprocess.Popen([self.exe] + argv, stdin=fd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=self.cwd, env=self.env,
                                    start_new_session=True)
        finally:
            os.close(fd)
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail("%s %s timed out: %r" % (self.backend, argv, err[-2000:]))
        return Result(self.backend, proc.returncode, out.decode(), err.decode(),
                      time.monotonic() - start)

    def ok(self, prompt, **opts):
        """:meth:`run` and assert success."""
        res = self.run(prompt, **opts)
        assert res.rc == 0 and res.text is not None, res
        return res

    def last_request(self):
        """The last main-model request the stub saw."""
        reqs = [r for r in self.stub.requests if self.backend != "gemini"
                or r.get("method") == "streamGenerateContent"]
        assert reqs, "the stub saw no model request"
        return reqs[-1]


@pytest.fixture(params=realcli.BACKENDS)
def harness(request, tmp_path):
    h = Harness(request.param, tmp_path)
    yield h
    h.stub.stop()


@pytest.mark.parametrize("backend", realcli.BACKENDS)
def test_cli_installed_at_pinned_version(backend):
    exe = realcli.find_cli(backend)
    assert exe, "%s CLI not found: %s" % (backend, realcli.INSTALL_HINT)
    out = subprocess.run([exe, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=60).stdout
    assert realcli.PINNED_VERSIONS[backend] in out, (out, realcli.INSTALL_HINT)


def test_json_answer(harness):
    res = harness.ok("say hello")
    assert res.text == REPLY
    assert res.session_id
    req = harness.last_request()
    assert req["user_text"] == "say hello"
    assert req["n_turns"] == 1


def test_stream_json(harness):
    res = harness.ok("say hello", fmt="stream-json")
    assert res.text == REPLY
    types = [e["type"] for e in res.events]
    if harness.backend == "claude":
        assert types[0] == "system" and res.events[0]["subtype"] == "init"
        assert "stream_event" in types and "assistant" in types
        deltas = "".join(e["event"]["delta"]["text"] for e in res.events
                         if e["type"] == "stream_event"
                         and e["event"]["type"] == "content_block_delta")
        assert deltas == REPLY
    elif harness.backend == "codex":
        assert types == ["thread.started", "turn.started", "item.completed", "turn.completed"]
    else:
        assert types[0] == "init" and types[1] == "message" and types[-1] == "result"
        assert res.events[1] == dict(res.events[1], role="user", content="say hello")
        assert sum(1 for e in res.events if e.get("delta")) >= 2


def test_resume_keeps_session_and_history(harness):
    harness.stub.set_mode("echo")
    first = harness.ok("first turn: alpha")
    assert first.text == "echo: first turn: alpha"
    second = harness.ok("second turn: beta", resume=first.session_id)
    assert second.session_id == first.session_id
    assert second.text == "echo: second turn: beta"
    req = harness.last_request()
    assert req["n_turns"] == 3, req  # user, assistant, user
    assert "first turn: alpha" in json.dumps(req["body"], ensure_ascii=False)
    assert "echo: first turn: alpha" in json.dumps(req["body"], ensure_ascii=False)


@pytest.mark.parametrize("prompt", ODD_PROMPTS.values(), ids=ODD_PROMPTS.keys())
def test_prompt_reaches_model_intact(harness, prompt):
    harness.stub.set_mode("echo")
    res = harness.ok(prompt)
    assert harness.last_request()["user_text"] == prompt
    assert res.text == "echo: " + prompt


def test_300k_prompt_via_stdin(harness):
    line = "0123456789 abcdefghij ünïcödé\n"
    prompt = line * (300_000 // len(line.encode()) + 1)
    res = harness.ok(prompt)
    assert res.text == REPLY
    assert harness.last_request()["user_text"] == prompt


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_ephemeral_session_cannot_be_resumed(backend, tmp_path):
    h = Harness(backend, tmp_path)
    try:
        res = h.ok("say hello", ephemeral=True)
        assert res.text == REPLY and res.session_id
        again = h.run("again", resume=res.session_id)
        assert again.rc == 1 and again.stdout == "", again
        assert len(h.stub.requests) == 1
    finally:
        h.stub.stop()


@pytest.mark.parametrize("sandbox", ["read-only", "workspace-write"])
def test_codex_sandbox_flag(tmp_path, sandbox):
    h = Harness("codex", tmp_path)
    try:
        assert h.ok("say hello", sandbox=sandbox).text == REPLY
        meta = json.loads(h.last_request()["headers"]["x-codex-turn-metadata"])
        assert meta["sandbox_mode"] == sandbox
    finally:
        h.stub.stop()


def test_quirk_claude_slash_prompt_is_a_local_command(tmp_path):
    """A stdin prompt starting with ``/`` is run as a slash command: no model call at all."""
    h = Harness("claude", tmp_path)
    try:
        res = h.ok("/help")
        assert "isn't available" in res.text and h.stub.requests == []
    finally:
        h.stub.stop()


def test_quirk_gemini_at_path_inlines_the_file(tmp_path):
    """gemini expands ``@path`` in the prompt to the file's content (claude/codex do not)."""
    h = Harness("gemini", tmp_path)
    try:
        (h.cwd / "notes.txt").write_text("NOTE-CONTENT-42\n")
        h.ok("summarise @notes.txt")
        body = json.dumps(h.last_request()["body"])
        assert "NOTE-CONTENT-42" in body
    finally:
        h.stub.stop()


def test_api_error_fails_fast(harness):
    harness.stub.set_mode("500")
    res = harness.run("say hello")
    assert res.rc != 0, res
    assert res.elapsed < 15, res
    assert len(harness.stub.requests) == 1  # no retries


def test_json_wall_time(harness, capsys):
    """Median wall time of one json run (reported; the bound only catches a stall)."""
    times = [harness.ok("say hello").elapsed for _ in range(3)]
    with capsys.disabled():
        print("\n[timing] %s json run: median %.2f s (%s)" % (
            harness.backend, statistics.median(times), ", ".join("%.2f" % t for t in times)))
    assert statistics.median(times) < 8
