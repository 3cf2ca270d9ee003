"""The `clinvk` command line: prompt, resume, sessions, config, parallel, chain, compare.

Through click's CliRunner (in-process) and as a real subprocess, with the fake CLIs on PATH and an
isolated clinvk home.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from clinvk.cli import cli
from clinvk.sessions import SqliteSessionStore as SessionStore
from tests.helpers import wait_for, wait_gone
from tests.server_process import FAKE_KNOBS_ENV

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(fake_clis, clinvk_home, monkeypatch):
    """The environment of a command-line run: fakes on PATH, an empty clinvk home, no CLINVK_* from outside."""
    for name in list(os.environ):
        if name.startswith("CLINVK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLINVK_HOME", str(clinvk_home))
    for name, value in FAKE_KNOBS_ENV.items():  # the fake CLIs' knobs pass the CLI environment allowlist
        monkeypatch.setenv(name, value)
    return clinvk_home


@pytest.fixture
def run(env):
    def invoke(*args, input=None, code=0):
        result = CliRunner().invoke(cli, list(args), input=input, prog_name="clinvk")
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    return invoke


def store(home: Path) -> SessionStore:
    return SessionStore(home / "sessions.db")


def write(path: Path, data, fmt="json") -> str:
    path.write_text(json.dumps(data) if fmt == "json" else yaml.safe_dump(data))
    return str(path)


# -- version, help ----------------------------------------------------------------------------------


def test_version(run):
    assert run("version").stdout.startswith("clinvk ")


def test_help_lists_commands_and_exit_codes(run):
    out = run("--help").stdout
    for command in ("prompt", "resume", "sessions", "config", "parallel", "chain", "compare", "serve", "version"):
        assert f"  {command} " in out
    assert "Exit codes:" in out and "2  usage error" in out
    assert "serve" in run("serve", "--help").stdout


# -- prompt -----------------------------------------------------------------------------------------


def test_prompt_as_argument_prints_the_answer_and_stores_a_session(run, fake_clis, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("hello there")
    assert result.stdout == "echo: hello there\n"
    call = fake_clis.last()
    assert call["backend"] == "claude" and call["prompt"] == "hello there" and call["cwd"] == str(tmp_path)
    sessions, total = store(env).list()
    assert total == 1 and sessions[0].backend == "claude" and sessions[0].working_dir == str(tmp_path)
    assert sessions[0].backend_session_id and sessions[0].status == "completed"


@pytest.mark.parametrize("args", [("-b", "codex", "hi"), ("hi", "-b", "codex"), ("prompt", "-b", "codex", "hi"),
                                  ("--backend", "codex", "prompt", "hi")])
def test_prompt_options_before_or_after(run, fake_clis, args):
    assert run(*args).stdout == "echo: hi\n"
    assert fake_clis.last()["backend"] == "codex"


@pytest.mark.parametrize("args", [(), ("-",), ("-b", "gemini"), ("-b", "gemini", "-")])
def test_prompt_from_stdin(run, fake_clis, args):
    result = run(*args, input="from stdin")
    assert result.stdout == "echo: from stdin\n"
    assert fake_clis.last()["prompt"] == "from stdin"


def test_prompt_json_output(run, env):
    body = json.loads(run("--json", "-b", "codex", "hi").stdout)
    session = store(env).get(body["session_id"])
    assert body["backend"] == "codex" and body["output"] == "echo: hi" and body["exit_code"] == 0
    assert body["backend_session_id"] == session.backend_session_id
    assert json.loads(run("-o", "json", "hi").stdout)["backend"] == "claude"


def test_prompt_stream_json_prints_unified_events(run):
    lines = [json.loads(line) for line in run("-o", "stream-json", "hi FAKE_CHUNKS=3").stdout.splitlines()]
    assert lines[0]["type"] == "init" and lines[-1]["type"] == "done"
    partial = [e["content"]["text"] for e in lines if e["type"] == "message" and e["content"].get("is_partial")]
    assert "".join(partial) == "echo: hi FAKE_CHUNKS=3"


def test_prompt_model_workdir_ephemeral(run, fake_clis, env, tmp_path):
    run("-m", "sonnet", "-w", str(tmp_path), "--ephemeral", "hi")
    call = fake_clis.last()
    assert "sonnet" in call["argv"] and "--no-session-persistence" in call["argv"] and call["cwd"] == str(tmp_path)
    assert store(env).count() == 0


def test_prompt_dry_run(run, fake_clis, env):
    out = run("--dry-run", "-b", "gemini", "hi").stdout
    assert out.startswith("Would execute: ") and "gemini" in out
    assert fake_clis.calls() == [] and store(env).count() == 0


def test_prompt_backend_failure_exits_1(run, env):
    result = run("-b", "gemini", "boom FAKE_FAIL=500", code=1)
    assert "Error [gemini]:" in result.stderr
    assert store(env).list()[0][0].status == "error"


def test_prompt_usage_errors_exit_2(run, fake_clis):
    assert "versoin" in run("versoin", code=2).stderr  # a typo of a command is not sent to a backend
    assert "did you mean 'version'" in run("versoin", code=2).stderr
    assert "one argument" in run("two", "words", code=2).stderr
    run("-b", "nope", "hi", code=2)
    run("--bogus", "hi", code=2)
    assert "empty" in run(input="   ", code=2).stderr
    assert fake_clis.calls() == []


def test_prompt_command_name_or_option_as_prompt_text(run, fake_clis):
    assert run("prompt", "version").stdout == "echo: version\n"
    assert run("--", "--help me").stdout == "echo: --help me\n"
    assert run("-b", "codex", "--", "-x").stdout == "echo: -x\n"
    assert [c["prompt"] for c in fake_clis.calls()] == ["version", "--help me", "-x"]


def test_prompt_unavailable_backend_exits_1(run, env):
    config = env / "config.yaml"
    config.write_text("backends:\n  codex:\n    command: /nonexistent/codex\n")
    assert "not available" in run("-b", "codex", "hi", code=1).stderr


def test_config_error_is_one_line_exit_2(run, env):
    (env / "config.yaml").write_text("server:\n  prot: 9000\n")
    result = run("hi", code=2)
    assert "server.prot" in result.stderr and "server.port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_prompt_continue_and_auto_resume(run, fake_clis, env):
    first = json.loads(run("--json", "-b", "codex", "first").stdout)
    second = json.loads(run("--json", "-c", "second").stdout)
    assert second["session_id"] == first["session_id"]
    assert "resume" in fake_clis.last()["argv"]
    (env / "config.yaml").write_text("session:\n  auto_resume: true\n")
    third = json.loads(run("--json", "third").stdout)
    assert third["session_id"] == first["session_id"] and store(env).get(first["session_id"]).turn_count == 3
    assert "session_id" not in json.loads(run("--json", "--ephemeral", "fourth").stdout)


# -- resume -----------------------------------------------------------------------------------------


def test_resume_by_id_prefix_and_last(run, fake_clis, env):
    session_id = json.loads(run("--json", "first").stdout)["session_id"]
    backend_session = store(env).get(session_id).backend_session_id
    assert run("resume", session_id[:8], "second").stdout == "echo: second\n"
    argv = fake_clis.last()["argv"]
    assert argv[argv.index("--resume") + 1] == backend_session
    assert run("resume", "--last", input="third").stdout == "echo: third\n"
    session = store(env).get(session_id)
    assert session.turn_count == 3 and session.status == "completed"


def test_resume_filters_and_errors(run, env):
    claude = json.loads(run("--json", "-b", "claude", "a").stdout)["session_id"]
    json.loads(run("--json", "-b", "codex", "b").stdout)
    body = json.loads(run("resume", "--last", "-b", "claude", "--json", "c").stdout)
    assert body["session_id"] == claude and body["backend"] == "claude"
    run("resume", code=2)
    assert "no session found" in run("resume", "ffffffff", "x", code=2).stderr
    run("resume", "not-hex", "x", code=2)
    run("resume", "--last", "-b", "gemini", "x", code=2)


# -- sessions ---------------------------------------------------------------------------------------


def test_sessions_list_show_delete_clean(run, env):
    assert run("sessions", "list").stdout.strip() == "No sessions found."
    first = json.loads(run("--json", "-b", "codex", "the first prompt").stdout)["session_id"]
    run("-b", "gemini", "the second prompt")
    out = run("sessions", "list").stdout
    assert out.splitlines()[0].split() == ["ID", "BACKEND", "STATUS", "LAST", "USED", "TURNS", "TOKENS", "TITLE"]
    assert first[:8] in out and "the first prompt" in out
    listed = json.loads(run("sessions", "list", "--json", "-b", "codex").stdout)
    assert listed["total"] == 1 and listed["sessions"][0]["id"] == first
    shown = run("sessions", "show", first[:8]).stdout
    assert f"ID:                 {first}" in shown and "Backend:            codex" in shown
    assert json.loads(run("sessions", "show", "--json", first).stdout)["initial_prompt"] == "the first prompt"
    assert run("sessions", "delete", first[:10]).stdout == f"Deleted session {first}.\n"
    run("sessions", "show", first, code=2)
    assert run("sessions", "clean", "--older-than", "30d").stdout.startswith("Deleted 0 session(s)")
    assert store(env).count() == 1
    for bad in ("0", "0d", "abc", "-1d"):
        run("sessions", "clean", "--older-than", bad, code=2)
    assert store(env).count() == 1


def test_sessions_clean_removes_old_sessions(run, env):
    run("hi")
    db = store(env)
    db._conn().execute("UPDATE sessions SET last_used = '2000-01-01T00:00:00.000000Z'")
    assert run("sessions", "clean").stdout.startswith("Deleted 1 session(s) not used for 30 days")
    assert db.count() == 0


# -- config -----------------------------------------------------------------------------------------


def test_config_show_and_set(run, env):
    out = run("config", "show").stdout
    assert "# config file: (none" in out
    shown = yaml.safe_load(out)
    assert shown["default_backend"] == "claude" and shown["parallel"]["max_tasks"] == 32
    assert run("config", "set", "parallel.max_workers", "5").stdout.startswith("Set parallel.max_workers = 5 in ")
    assert yaml.safe_load((env / "config.yaml").read_text()) == {"parallel": {"max_workers": 5}}
    body = json.loads(run("config", "show", "--json").stdout)
    assert body["config"]["parallel"]["max_workers"] == 5 and body["config_file"] == str(env / "config.yaml")
    assert body["available_backends"] == {"claude": True, "codex": True, "gemini": True}
    assert "did you mean" in run("config", "set", "paralel.max_workers", "5", code=2).stderr
    run("config", "set", "parallel.max_workers", "many", code=2)
    run("config", "set", "parallel.max_workers", code=2)
    assert yaml.safe_load((env / "config.yaml").read_text()) == {"parallel": {"max_workers": 5}}


def test_config_show_hides_secrets(run, env):
    (env / "config.yaml").write_text("backends:\n  claude:\n    env: {ANTHROPIC_API_KEY: sk-secret}\n")
    assert "sk-secret" not in run("config", "show").stdout


def test_config_option_points_at_another_file(run, env, tmp_path):
    other = tmp_path / "other.yaml"
    run("--config", str(other), "config", "set", "default_backend", "codex")
    assert not (env / "config.yaml").exists()
    assert yaml.safe_load(run("--config", str(other), "config", "show").stdout)["default_backend"] == "codex"


# -- parallel ---------------------------------------------------------------------------------------


TASKS = {"tasks": [{"backend": "claude", "prompt": "one FAKE_DELAY=1", "name": "first"},
                   {"backend": "codex", "prompt": "two"},
                   {"backend": "gemini", "prompt": "three"}]}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_parallel_from_file(run, fake_clis, tmp_path, fmt):
    path = write(tmp_path / f"tasks.{fmt}", TASKS, fmt)
    result = run("parallel", "--file", path)
    out = result.stdout
    for i, task in enumerate(TASKS["tasks"]):
        assert f"echo: {task['prompt']}" in out
        assert f"[{i + 1}/3] {task['backend']}" in result.stderr  # plain progress lines (not a TTY)
    assert "Total: 3 tasks, 3 completed, 0 failed, 0 cancelled" in out
    assert out.index("echo: one") < out.index("echo: two") < out.index("echo: three")
    times = sorted(c["time"] for c in fake_clis.calls())
    assert times[-1] - times[0] < 1  # concurrent: all started while the first one slept its 1 s


def test_parallel_json_output_matches_the_api(run, tmp_path):
    body = json.loads(run("parallel", "-f", write(tmp_path / "t.json", TASKS), "--json").stdout)
    assert (body["total_tasks"], body["completed"]) == (3, 3)
    assert [r["backend"] for r in body["results"]] == ["claude", "codex", "gemini"]
    assert body["results"][0]["name"] == "first" and body["results"][0]["status"] == "completed"


def test_parallel_stdin_bare_list_and_default_backend(run, fake_clis):
    data = json.dumps([{"prompt": "a"}, {"prompt": "b", "backend": "gemini"}])
    body = json.loads(run("-b", "codex", "parallel", "--json", input=data).stdout)
    assert [r["backend"] for r in body["results"]] == ["codex", "gemini"]
    body = json.loads(run("parallel", "--json", input=data).stdout)
    assert body["results"][0]["backend"] == "claude"  # default_backend


def test_parallel_failure_exits_1_and_fail_fast(run, fake_clis, tmp_path):
    tasks = {"tasks": [{"backend": "claude", "prompt": "hang FAKE_HANG"},
                       {"backend": "gemini", "prompt": "boom FAKE_DELAY=0.2 FAKE_FAIL=500"}]}
    path = write(tmp_path / "t.json", tasks)
    body = json.loads(run("parallel", "-f", path, "--fail-fast", "--json", code=1).stdout)
    assert [r["status"] for r in body["results"]] == ["cancelled", "failed"]
    result = run("parallel", "-f", write(tmp_path / "u.json", {"tasks": tasks["tasks"][1:]}), code=1)
    assert "FAILED" in result.stdout and "Total: 1 tasks, 0 completed, 1 failed" in result.stdout


def test_parallel_options_override_the_file(run, fake_clis, tmp_path):
    tasks = {"max_parallel": 3, "tasks": [{"backend": "claude", "prompt": f"t{i} FAKE_DELAY=0.3"} for i in range(2)]}
    run("parallel", "-f", write(tmp_path / "t.json", tasks), "--max-parallel", "1", "-q")
    times = sorted(c["time"] for c in fake_clis.calls())
    assert times[1] - times[0] >= 0.3


def test_parallel_dry_run(run, fake_clis, tmp_path):
    out = run("--dry-run", "parallel", "-f", write(tmp_path / "t.json", TASKS)).stdout
    assert out.count("Would execute: ") == 3 and fake_clis.calls() == []
    out = run("parallel", "--dry-run", "-f", write(tmp_path / "t.json", TASKS), "-q").stdout
    assert out.count("Would execute: ") == 3 and fake_clis.calls() == []


def test_parallel_stream_json(run, tmp_path):
    lines = [json.loads(x) for x in run("parallel", "-f", write(tmp_path / "t.json", TASKS), "-o", "stream-json")
             .stdout.splitlines()]
    assert lines[-1]["type"] == "done" and lines[-1]["content"]["completed"] == 3
    assert {e["task"] for e in lines[:-1]} == {0, 1, 2}


@pytest.mark.parametrize("content, message", [
    ('{"tasks": [{"backend": "claude", "prompt": "a", "bogus": 1}]}', "tasks[0].bogus: unknown field"),
    ('{"tasks": [{"backend": "nope", "prompt": "a"}]}', "tasks[0].backend: unknown backend"),
    ('{"tasks": []}', "tasks"),
    ('{"tasks": [{"backend": "claude", "prompt": "a"}', "invalid JSON at line 1"),
    ('"just a string"', "must be a mapping"),
])
def test_parallel_bad_files_exit_2(run, fake_clis, tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    assert message in run("parallel", "-f", str(path), code=2).stderr
    assert fake_clis.calls() == []


def test_parallel_missing_file_exits_2(run, tmp_path):
    assert "cannot be read" in run("parallel", "-f", str(tmp_path / "none.json"), code=2).stderr


def test_parallel_relative_workdir_is_from_the_current_directory(run, fake_clis, tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    run("parallel", "-q", input=json.dumps([{"backend": "claude", "prompt": "a", "workdir": "sub"}]))
    assert fake_clis.last()["cwd"] == str(tmp_path / "sub")


# -- chain ------------------------------------------------------------------------------------------


def test_chain(run, fake_clis, tmp_path):
    steps = {"steps": [{"name": "analyze", "backend": "claude", "prompt": "first"},
                       {"name": "improve", "backend": "codex", "prompt": "got {{previous}}"}]}
    result = run("chain", "-f", write(tmp_path / "c.yaml", steps, "yaml"))
    assert "echo: got echo: first" in result.stdout
    assert "[2/2] improve (codex)" in result.stdout and "Total: 2/2 steps completed" in result.stdout
    assert fake_clis.last()["prompt"] == "got echo: first"
    body = json.loads(run("chain", "-f", write(tmp_path / "c.json", steps), "--json").stdout)
    assert (body["completed_steps"], body["failed_step"]) == (2, 0)
    assert body["results"][1]["output"] == "echo: got echo: first"


def test_chain_failure_continues_by_default_and_stops_on_request(run, fake_clis, tmp_path):
    steps = [{"backend": "gemini", "prompt": "boom FAKE_FAIL=500"}, {"backend": "claude", "prompt": "{{previous}}!"}]
    path = write(tmp_path / "c.json", steps)
    result = run("chain", "-f", path, code=1)
    assert "chain failed at step 1" in result.stderr and len(fake_clis.calls()) == 2
    result = run("chain", "-f", path, "--stop-on-failure", code=1)
    assert "chain failed at step 1" in result.stderr and len(fake_clis.calls()) == 3
    body = json.loads(run("chain", "-f", write(tmp_path / "s.json", {"steps": steps, "stop_on_failure": True}),
                          "--json", code=1).stdout)
    assert len(body["results"]) == 1 and body["failed_step"] == 1
    body = json.loads(run("chain", "-f", path, "--no-stop-on-failure", "--json", code=1).stdout)
    assert len(body["results"]) == 2 and body["failed_step"] == 1


@pytest.mark.parametrize("extra", [{}, {"stop_on_failure": True}, {"stop_on_failure": False}])
def test_chain_cli_and_http_agree(run, client, fake_clis, tmp_path, extra):
    """The same chain document gives the same outcome on the command line and over HTTP."""
    doc = {"steps": [{"backend": "gemini", "prompt": "boom FAKE_FAIL=500"},
                     {"backend": "claude", "prompt": "{{previous}}!"}], **extra}
    cli_body = json.loads(run("chain", "-f", write(tmp_path / "c.json", doc), "--json", code=1).stdout)
    http_body = client.post("/api/v1/chain", json=doc).json

    def shape(body):
        return (body["total_steps"], body["completed_steps"], body["failed_step"],
                [(r["step"], r["backend"], r["status"]) for r in body["results"]])

    assert shape(cli_body) == shape(http_body)
    assert len(cli_body["results"]) == (1 if extra.get("stop_on_failure") else 2)


@pytest.mark.parametrize("extra", [{}, {"fail_fast": True}])
def test_parallel_cli_and_http_agree(run, client, fake_clis, tmp_path, extra):
    doc = {"tasks": [{"backend": "gemini", "prompt": "FAKE_FAIL=500"},
                     {"backend": "claude", "prompt": "FAKE_DELAY=1 slow"}], "max_parallel": 1, **extra}
    cli_body = json.loads(run("parallel", "-f", write(tmp_path / "p.json", doc), "--json", code=1).stdout)
    http_body = client.post("/api/v1/parallel", json=doc).json

    def shape(body):
        return ([(r["index"], r["backend"], r["status"]) for r in body["results"]],
                {k: body[k] for k in ("total_tasks", "completed", "failed", "cancelled")})

    assert shape(cli_body) == shape(http_body)
    assert cli_body["cancelled"] == (1 if extra else 0)


def test_chain_bad_step_exits_2_before_running(run, fake_clis, tmp_path):
    steps = [{"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": "b", "workdir": "/nonexistent"}]
    assert "steps[1].workdir" in run("chain", "-f", write(tmp_path / "c.json", steps), code=2).stderr
    assert "steps[0].prompt" in run("chain", input='[{"backend": "claude", "prompt": "{{previous}}"}]',
                                    code=2).stderr
    assert fake_clis.calls() == []


# -- compare ----------------------------------------------------------------------------------------


def test_compare(run, fake_clis):
    result = run("compare", "--backends", "gemini, codex", "what is it")
    out = result.stdout
    assert out.index("[gemini]") < out.index("[codex]") and out.count("echo: what is it") == 2
    assert "BACKEND" in out and "Total time:" in out
    assert "Comparing 2 backends: gemini, codex" in result.stderr


def test_compare_all_backends_json(run):
    body = json.loads(run("compare", "--all-backends", "--json", "q").stdout)
    assert [r["backend"] for r in body["results"]] == ["claude", "codex", "gemini"]
    assert body["completed"] == 3 and body["prompt"] == "q"


def test_compare_all_backends_skips_unavailable(run, env):
    (env / "config.yaml").write_text("backends:\n  codex:\n    enabled: false\n")
    result = run("compare", "--all-backends", "--json", "q")
    assert [r["backend"] for r in json.loads(result.stdout)["results"]] == ["claude", "gemini"]
    assert "skipping codex" in result.stderr


def test_compare_failure_and_usage_errors(run, fake_clis):
    assert json.loads(run("compare", "--backends", "claude", "--json", "x FAKE_FAIL=crash", code=1).stdout)[
        "failed"] == 1
    run("compare", "q", code=2)
    run("compare", "--backends", "claude", "--all-backends", "q", code=2)
    assert "unknown backend 'nope'" in run("compare", "--backends", "claude,nope", "q", code=2).stderr
    assert json.loads(run("compare", "--backends", "codex", "--json", input="from stdin").stdout)["prompt"] \
        == "from stdin"


def test_compare_sequential_and_model(run, fake_clis):
    run("compare", "--backends", "claude,claude", "--sequential", "-m", "haiku", "q FAKE_DELAY=0.3", "-q")
    calls = sorted(fake_clis.calls(), key=lambda c: c["time"])
    assert calls[1]["time"] - calls[0]["time"] >= 0.3
    assert all("haiku" in c["argv"] for c in calls)


# -- as a real process ------------------------------------------------------------------------------


def clinvk(*args, input=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "clinvk.cli", *args], input=input, capture_output=True,
                          text=True, timeout=120, cwd=cwd or ROOT)


def test_subprocess_prompt_sessions_and_exit_codes(env, fake_clis, tmp_path):
    result = clinvk("-b", "codex", input="piped prompt", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "echo: piped prompt\n"), result.stderr
    listed = clinvk("sessions", "list", "--json")
    assert json.loads(listed.stdout)["sessions"][0]["working_dir"] == str(tmp_path)
    failed = clinvk("-b", "claude", "x FAKE_FAIL=401")
    assert failed.returncode == 1 and "Error [claude]" in failed.stderr
    usage = clinvk("--bogus")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    assert clinvk("version").stdout.startswith("clinvk ")


def test_subprocess_parallel_chain_compare(env, fake_clis, tmp_path):
    tasks = write(tmp_path / "tasks.yaml", TASKS, "yaml")
    result = clinvk("parallel", "--file", tasks, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["completed"] == 3
    chain = clinvk("chain", "--json", input=json.dumps([{"backend": "claude", "prompt": "a"},
                                                         {"backend": "gemini", "prompt": "b {{previous}}"}]))
    assert json.loads(chain.stdout)["results"][1]["output"] == "echo: b echo: a"
    compare = clinvk("compare", "--all-backends", "hello")
    assert compare.returncode == 0 and compare.stdout.count("echo: hello") == 3


def test_console_script(env, fake_clis):
    script = Path(sys.executable).with_name("clinvk")
    if not script.exists():
        pytest.fail(f"the clinvk console script is not installed next to {sys.executable} (pip install -e .)")
    result = subprocess.run([str(script), "--json", "-b", "gemini", "hi"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout)["output"] == "echo: hi"


def test_subprocess_ctrl_c_kills_running_clis(env, fake_clis, tmp_path):
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "clinvk.cli", "compare", "--all-backends", "-q", "FAKE_HANG"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(fake_clis.calls()) == 3, within=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert wait_gone(*(call["pid"] for call in fake_clis.calls()))


# -- human output helpers -----------------------------------------------------------------------------


def test_no_arguments_on_a_terminal_prints_help(run, monkeypatch, fake_clis):
    monkeypatch.setattr("clinvk.cli.context.stdin_is_tty", lambda: True)
    assert "Usage: clinvk" in run().stdout
    assert "no prompt given" in run("-b", "codex", code=2).stderr
    assert fake_clis.calls() == []


def test_live_progress_on_a_terminal():
    import io

    from clinvk.cli.output import Progress
    from clinvk.events import RunResult
    from clinvk.orchestration import TaskOutcome

    out = io.StringIO()
    with Progress(["claude one", "codex two", "gemini three"], out, tty=True, title="Running 3 tasks") as progress:
        progress("start", 0, None)
        progress("start", 1, None)
        time.sleep(0.25)  # let it redraw while they run
        progress("end", 1, TaskOutcome(1, RunResult("codex", exit_code=1, error="boom", duration_ms=20), "failed"))
        progress("end", 0, TaskOutcome(0, RunResult("claude", duration_ms=1500), "completed"))
        progress("end", 2, TaskOutcome(2, RunResult("gemini", exit_code=-1, error="cancelled", cancelled=True),
                                       "cancelled"))
    text = out.getvalue()
    assert text.startswith("Running 3 tasks\n")
    assert "[1] claude one  running" in text and "[3] gemini three  waiting" in text
    assert "\x1b[4F" in text  # redrawn in place
    final = text.rsplit("\x1b[4F", 1)[1]
    assert "[1] claude one  ok 1.50s" in final and "[2] codex two  FAILED 0.02s  boom" in final
    assert "[3] gemini three  cancelled" in final and "0 running, 1 ok, 1 failed, 1 cancelled" in final


def test_plain_progress_lines():
    import io

    from clinvk.cli.output import Progress
    from clinvk.events import RunResult
    from clinvk.orchestration import TaskOutcome

    out = io.StringIO()
    with Progress(["claude one", "codex two"], out, tty=False) as progress:
        progress("start", 1, None)
        progress("end", 1, TaskOutcome(1, RunResult("codex", exit_code=1, error="boom", duration_ms=20), "failed"))
    assert out.getvalue() == "[2/2] codex two: running\n[2/2] codex two: FAILED in 0.02s: boom\n"


def test_command_line_imports_nothing_from_the_server():
    """The command line starts without Flask or the HTTP layer (``serve`` loads them when it runs)."""
    code = ("import sys, clinvk.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('clinvk.server', 'flask', 'gunicorn'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
