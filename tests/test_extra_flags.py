"""Request ``extra`` flags that widen an agent's powers (tools, directories, permission or approval
modes, MCP servers, settings, extensions, config overrides) need the operator's
``backends.<name>.allow_dangerous_flags``, like ``approval_mode: none``; every allowlisted flag is one
the pinned CLI's ``--help`` lists. Model names that could be read as flags or split are refused."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from clinvk.backends import BACKENDS

try:
    from tests.conftest import FIXTURES
except ImportError:  # pragma: no cover
    from conftest import FIXTURES

HELP = {"claude": ["claude/help.txt"], "codex": ["codex/exec-help.txt", "codex/help.txt"],
        "gemini": ["gemini/help.txt"]}
# From the issue and the pinned --help texts: each grants tools, directories, permissions, MCP servers,
# settings, extensions, policies or config overrides.
DANGEROUS = {
    "claude": [["--allowedTools", "Bash(*)"], ["--allowed-tools", "Bash(*)"], ["--add-dir", "/"],
               ["--permission-mode", "bypassPermissions"], ["--mcp-config", "/tmp/m.json"],
               ["--settings", "{}"], ["--setting-sources", "user"], ["--plugin-dir", "/tmp/p"],
               ["--agents", "{}"], ["--dangerously-skip-permissions"], ["--allow-dangerously-skip-permissions"]],
    "codex": [["-c", "sandbox_mode=danger-full-access"], ["--config", "x=1"], ["--add-dir", "/"],
              ["-s", "danger-full-access"], ["--sandbox", "danger-full-access"], ["--enable", "x"],
              ["--disable", "x"], ["-p", "prof"], ["--profile", "prof"],
              ["--dangerously-bypass-approvals-and-sandbox"], ["--approve-for-me"],
              ["--dangerously-bypass-hook-trust"], ["--trust"], ["--ignore-rules"]],
    "gemini": [["--yolo"], ["-y"], ["--approval-mode", "yolo"], ["--include-directories", "/"],
               ["--allowed-tools", "run_shell_command"], ["--allowed-mcp-server-names", "x"],
               ["-e", "evil"], ["--extensions", "evil"], ["--policy", "/tmp/p"], ["--admin-policy", "/tmp/p"]],
}
BAD_MODELS = ["-x", "--help", "a b", "sonnet\n--add-dir", "a\tb", "ctl\x01", "del\x7f", "nb\u00a0sp", " sonnet", "sonnet\n"]


def help_flags(backend: str) -> set[str]:
    text = "".join((FIXTURES / name).read_text() for name in HELP[backend])
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_allowed_extra_flag_is_in_the_pinned_help(backend):
    known = help_flags(backend)
    backend_class = BACKENDS[backend]
    flags = set(backend_class.allowed_extra_flags) | set(backend_class.dangerous_extra_flags)
    assert flags - known == set()
    assert {tokens[0].split("=")[0] for tokens in DANGEROUS[backend]} <= set(backend_class.dangerous_extra_flags)


@pytest.mark.parametrize("backend,extra", [(b, e) for b, flags in DANGEROUS.items() for e in flags])
def test_power_widening_flags_need_the_operator(make_app, fake_clis, backend, extra):
    body = {"backend": backend, "prompt": "hi", "extra": extra}
    refused = make_app().test_client().post("/api/v1/prompt", json=body)
    assert refused.status_code == 400, refused.data
    problem = refused.get_json()
    assert problem["errors"][0]["field"] == "body.extra[0]"
    assert f"backends.{backend}.allow_dangerous_flags" in problem["message"]
    assert fake_clis.calls() == []
    allowed = make_app(backends={backend: {"allow_dangerous_flags": True}}).test_client()
    response = allowed.post("/api/v1/prompt", json={**body, "dry_run": True})
    assert response.status_code == 200, response.data
    assert extra[0] in response.get_json()["output"]


@pytest.mark.parametrize("backend,extra", [("claude", ["--effort", "high"]), ("claude", ["--disallowedTools", "Bash"]),
                                           ("codex", ["-m", "gpt-5.5"]), ("gemini", ["--debug"])])
def test_harmless_flags_pass_without_the_opt_in(client, fake_clis, backend, extra):
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "hi", "extra": extra})
    assert response.status_code == 200, response.data
    assert extra[0] in fake_clis.last()["argv"]


# ----------------------------------------------------------------------------------------- model

@pytest.mark.parametrize("model", BAD_MODELS)
def test_bad_model_is_refused_naming_model_in_every_api(client, fake_clis, model):
    native = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", "model": model})
    assert native.status_code in (400, 422) and native.get_json()["errors"][0]["field"] == "body.model", native.data
    compat = model + "claude" if model.startswith("-") else "claude-" + model  # a name that maps to claude
    openai = client.post("/openai/v1/chat/completions",
                         json={"model": compat, "messages": [{"role": "user", "content": "x"}]})
    assert openai.status_code == 400 and "model" in openai.get_json()["error"]["message"], openai.data
    anthropic = client.post("/anthropic/v1/messages", json={"model": compat, "max_tokens": 5,
                                                            "messages": [{"role": "user", "content": "x"}]})
    assert anthropic.status_code == 400 and "model" in anthropic.get_json()["error"]["message"], anthropic.data
    parallel = client.post("/api/v1/parallel", json={"tasks": [{"backend": "codex", "prompt": "x", "model": model}]})
    assert parallel.status_code in (400, 422), parallel.data
    assert fake_clis.calls() == []


@pytest.mark.parametrize("extra", [["--model", "-x"], ["--model=a b"], ["--fallback-model", "x\ty"]])
def test_bad_model_in_extra_is_refused(client, fake_clis, extra):
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", "extra": extra})
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"].startswith("body.extra["), \
        response.data


def test_bad_model_on_the_command_line(fake_clis, clinvk_home, monkeypatch):
    from clinvk.cli import cli
    monkeypatch.setenv("CLINVK_HOME", str(clinvk_home))
    result = CliRunner().invoke(cli, ["-b", "claude", "-m", "--add-dir", "hi"], prog_name="clinvk")
    assert result.exit_code != 0 and "model" in (result.stderr + result.stdout)
    result = CliRunner().invoke(cli, ["-b", "claude", "-m", "a b", "hi"], prog_name="clinvk")
    assert result.exit_code != 0 and "model" in (result.stderr + result.stdout)
    assert fake_clis.calls() == []
