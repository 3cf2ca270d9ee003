"""The CLI's environment is an allowlist: no CLINVK_* variable (the API keys) and no other server secret
reaches a backend CLI; each backend gets its own vendor variables, the system basics, its configured
``env`` and ``pass_env``."""

from __future__ import annotations

import os

import pytest

from clinvk.cli_env import CliEnvironments, cli_environment, is_allowed
from clinvk.config import BackendConfig

SECRETS = {"CLINVK_API_KEYS": "sk-client-key-1,sk-client-key-2", "CLINVK_HOME_SECRET": "x",
           "DATABASE_PASSWORD": "hunter2", "GITHUB_TOKEN": "ghp_secret", "AWS_SECRET_ACCESS_KEY_OTHER": "x"}


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_server_secrets_do_not_reach_the_cli(make_app, fake_clis, monkeypatch, backend):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/anthropic")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/openai")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-key")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = make_app(backends={backend: {"env": {"OPERATOR_VAR": "set"}}}).test_client()
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "hi"})
    assert response.status_code == 200, response.json
    names = set(fake_clis.last()["env_names"])
    assert not [n for n in names if n.startswith("CLINVK_")]
    assert not names & {"DATABASE_PASSWORD", "GITHUB_TOKEN"}
    assert {"PATH", "HOME", "LC_ALL", "HTTPS_PROXY", "OPERATOR_VAR"} <= names
    own = {"claude": "ANTHROPIC_BASE_URL", "codex": "OPENAI_BASE_URL", "gemini": "GEMINI_API_KEY"}
    assert own[backend] in names
    assert not (set(own.values()) - {own[backend]}) & names, "another vendor's variables reached the CLI"


def test_per_session_home_variables_pass():
    for backend, name in (("claude", "CLAUDE_CONFIG_DIR"), ("codex", "CODEX_HOME"), ("gemini", "GEMINI_CLI_HOME")):
        assert is_allowed(backend, name)


def test_pass_env_patterns_and_clinvk_never():
    config = BackendConfig("codex", pass_env=["MY_TOOL_*", "EXACT", "CLINVK_*"], env={"CLINVK_X": "1"})
    env = cli_environment("codex", config, {"MY_TOOL_A": "1", "EXACT": "2", "EXACTLY": "3", "CLINVK_API_KEYS": "k"})
    assert env == {"MY_TOOL_A": "1", "EXACT": "2"}


def test_the_cached_environment_follows_the_servers_and_the_settings(monkeypatch):
    """CliEnvironments answers from its last computation only while neither the server's environment
    nor the backend's pass_env/env changed; each caller gets a dict of its own."""
    envs, config = CliEnvironments(), BackendConfig("claude")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.setenv("EXTRA_SETTING", "1")
    assert "ANTHROPIC_BASE_URL" not in envs.get("claude", config, os.environ)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/a")
    assert envs.get("claude", config, os.environ)["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9/a"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/b")
    assert envs.get("claude", config, os.environ)["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9/b"
    monkeypatch.setenv("CLINVK_API_KEYS", "sk-late")
    assert "CLINVK_API_KEYS" not in envs.get("claude", config, os.environ)
    assert "EXTRA_SETTING" not in envs.get("claude", config, os.environ)
    config.pass_env.append("EXTRA_SETTING")
    assert envs.get("claude", config, os.environ)["EXTRA_SETTING"] == "1"
    config.env["OPERATOR_VAR"] = "set"
    mine = envs.get("claude", config, os.environ)
    assert mine["OPERATOR_VAR"] == "set"
    mine["CHANGED_BY_A_CALLER"] = "x"
    assert "CHANGED_BY_A_CALLER" not in envs.get("claude", config, os.environ)
    assert envs.get("codex", config, os.environ) == cli_environment("codex", config, os.environ)
