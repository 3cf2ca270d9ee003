"""``clinvk jobs`` against a live server on 127.0.0.1 and the fake CLIs: submit, list, show, logs
(following with the progress display), cancel; the server from --server or $CLINVK_SERVER, the key
from $CLINVK_API_KEY."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner

from clinvk.cli import cli
from tests.helpers import wait_for, wait_gone
from tests.liveserver import make_live  # noqa: F401 (fixture)


@pytest.fixture
def server(make_live, fake_clis):
    return make_live()


def run(*args, env=None, input=None):
    result = CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    return result


def job_state(server, job_id):
    return requests.get(f"{server.url}/api/v1/jobs/{job_id}", timeout=30).json()


def test_submit_follow_prints_the_answer_and_the_outcome(server):
    result = run("jobs", "submit", "-b", "claude", "-f", "hello from the cli", "--server", server.url)
    assert result.exit_code == 0, result.output
    job_id, rest = result.stdout.split("\n", 1)
    assert rest.strip() == "echo: hello from the cli"
    assert f"job {job_id[:8]}: completed" in result.stderr
    assert job_state(server, job_id)["status"] == "completed"


def test_submit_then_list_show_logs(server):
    job_id = run("jobs", "submit", "-b", "codex", "list me", env={"CLINVK_SERVER": server.url}).stdout.strip()
    assert wait_for(lambda: job_state(server, job_id)["status"] == "completed")
    listed = run("jobs", "list", "--server", server.url)
    assert job_id[:8] in listed.stdout and "completed" in listed.stdout
    as_json = json.loads(run("jobs", "list", "--json", "--status", "completed", "--server", server.url).stdout)
    assert [j["id"] for j in as_json["jobs"]] == [job_id]
    shown = run("jobs", "show", job_id, "--server", server.url)
    assert "status:   completed" in shown.stdout and shown.stdout.rstrip().endswith("echo: list me")
    logs = run("jobs", "logs", job_id, "--server", server.url)
    assert logs.stdout.strip() == "echo: list me" and "completed" in logs.stderr
    events = [json.loads(line) for line in run("jobs", "logs", job_id, "--json", "--after", "1",
                                               "--server", server.url).stdout.splitlines()]
    assert events[0]["seq"] == 2 and events[-1]["type"] == "done"


def test_chain_file_job_shows_its_steps(server, tmp_path):
    body = tmp_path / "chain.yaml"
    body.write_text("kind: chain\nsteps:\n  - {backend: claude, prompt: one}\n  - {backend: gemini, prompt: 'two {{previous}}'}\n")
    result = run("jobs", "submit", "--file", str(body), "-f", "--server", server.url)
    assert result.exit_code == 0, result.output
    assert "step 1: completed" in result.stderr and "step 2: completed" in result.stderr
    assert "echo: two echo: one" in result.stdout


def test_cancel_ends_the_run_and_a_failed_follow_exits_1(server, fake_clis):
    job_id = run("jobs", "submit", "-b", "claude", "stuck FAKE_HANG", "--server", server.url).stdout.strip()
    assert wait_for(lambda: job_state(server, job_id)["status"] == "running")
    assert wait_for(fake_clis.calls)  # the fake logs its call once it has started
    pid = fake_clis.last()["pid"]
    cancelled = run("jobs", "cancel", job_id, "--server", server.url)
    assert cancelled.exit_code == 0 and job_id in cancelled.stdout
    assert wait_gone(pid)
    assert wait_for(lambda: job_state(server, job_id)["status"] == "cancelled")
    followed = run("jobs", "logs", "-f", job_id, "--server", server.url)
    assert followed.exit_code == 1 and "cancelled" in followed.stderr
    assert "deleted" in run("jobs", "cancel", job_id, "--server", server.url).stdout


def test_api_key_from_the_environment(make_live, fake_clis):
    server = make_live(server={"api_keys": ["sk-jobs-test"]})
    refused = run("jobs", "list", "--server", server.url)
    assert refused.exit_code == 1 and "401" in refused.output
    allowed = run("jobs", "list", "--server", server.url, env={"CLINVK_API_KEY": "sk-jobs-test"})
    assert allowed.exit_code == 0 and "No jobs found." in allowed.stdout


def test_server_errors_are_clear(server):
    unknown = run("jobs", "show", "0" * 32, "--server", server.url)
    assert unknown.exit_code == 2 and "404" in unknown.output and "no job" in unknown.output
    bad_url = run("jobs", "list", "--server", "ftp://x")
    assert bad_url.exit_code == 2 and "--server must be an http(s) URL" in bad_url.output
    down = run("jobs", "list", "--server", "http://127.0.0.1:9")
    assert down.exit_code == 1 and "cannot reach the clinvk server" in down.output
