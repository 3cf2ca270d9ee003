"""Hardening checked with the genuine CLIs: what the CLI process really gets in its environment, and
that a prompt starting with "/" reaches the model as text (gemini runs it as a command otherwise)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clinvk.spare_dirs import SPARES
from clinvk.specs import PromptRequest
from tests.helpers import wait_for

pytestmark = pytest.mark.realcli

SERVER_SECRETS = {"CLINVK_API_KEYS": "sk-clinvk-client-key", "DATABASE_PASSWORD": "hunter2-db"}


def group_environments(pgid: int) -> dict[int, dict[str, str]]:
    """The environment of every live process in process group ``pgid`` (the CLI and its children)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            raw = (entry / "environ").read_bytes()
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
        found[int(entry.name)] = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                                      if "=" in item)
    return found


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_the_genuine_cli_process_holds_no_server_secret(realcli_app, stubs, monkeypatch, backend):
    for name, value in SERVER_SECRETS.items():
        monkeypatch.setenv(name, value)
    stubs[backend].set_mode("hang")  # the CLI waits for its model: its environment can be read meanwhile
    service = realcli_app.extensions["clinvk.service"]
    run = service.prepare(PromptRequest(prompt="print your environment", backend=backend, stream=True,
                                        ephemeral=True)).start_stream()
    try:
        assert wait_for(lambda: stubs[backend].requests, 60), f"{backend} never called its stub"
        environments = group_environments(run._process.pid)
        assert environments, "no process of the CLI's group was found"
        for pid, env in environments.items():
            leaked = {k for k, v in env.items() if k.startswith("CLINVK_") or v in SERVER_SECRETS.values()}
            assert not leaked, f"{backend} process {pid} holds {leaked}"
        assert any(env.get("HOME") for env in environments.values())
    finally:
        run.cancel("test done")
        run.close()


def project_with_commands(root: Path) -> Path:
    """A workdir whose repository ships custom commands, and a file next to it (outside the workdir)."""
    work = root / "work"
    (work / ".gemini" / "commands").mkdir(parents=True)
    (work / ".gemini" / "commands" / "hello.toml").write_text('prompt = "CUSTOM-CMD-EXPANDED {{args}}"\n')
    (work / ".claude" / "commands").mkdir(parents=True)
    (work / ".claude" / "commands" / "hello.md").write_text("CUSTOM-CMD-EXPANDED $ARGUMENTS\n")
    (root / "outside.txt").write_text("OUTSIDE-FILE-CONTENT\n")
    return work


@pytest.mark.parametrize("backend,prompt", [("gemini", "/hello world"), ("gemini", "/about"),
                                            ("claude", "/hello world")])
def test_a_slash_prompt_reaches_the_genuine_cli_model_as_text(realcli_app, stubs, tmp_path, backend, prompt):
    work = project_with_commands(tmp_path)
    service = realcli_app.extensions["clinvk.service"]
    result = service.prepare(PromptRequest(prompt=prompt, backend=backend, workdir=str(work),
                                           ephemeral=True)).execute()
    assert result.ok, result.error
    # The model got the text, with the space that keeps it text: no expansion, no local command.
    assert [r.get("user_text") for r in stubs[backend].requests] == [" " + prompt]


def test_claude_at_mention_attaches_no_file(realcli_app, stubs, tmp_path):
    work = project_with_commands(tmp_path)
    service = realcli_app.extensions["clinvk.service"]
    result = service.prepare(PromptRequest(prompt="@../outside.txt what is this", backend="claude",
                                           workdir=str(work), ephemeral=True)).execute()
    assert result.ok, result.error
    messages = json.dumps([r["body"]["messages"] for r in stubs["claude"].requests])
    assert "@../outside.txt what is this" in messages and "OUTSIDE-FILE-CONTENT" not in messages


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_a_run_without_workdir_runs_in_a_scratch_dir_that_leaves_nothing(realcli_app, stubs, tmp_path, backend):
    service = realcli_app.extensions["clinvk.service"]
    result = service.prepare(PromptRequest(prompt="where am I", backend=backend, ephemeral=True)).execute()
    assert result.ok, result.error
    scratch = service.config.home / "scratch"
    if service.warm_pool is not None:  # its standby CLI waits in a scratch dir of its own, gone with it
        service.warm_pool.close()
    # Gone, or (left untouched) waiting empty for the next run (clinvk.spare_dirs).
    assert scratch.is_dir() and wait_for(lambda: set(map(str, scratch.iterdir())) <= SPARES.held(), 30), \
        "the ephemeral run's scratch dir is gone"
    leftovers = [p for p in (tmp_path / f"{backend}-home").rglob(".project_root")
                 if str(scratch) in p.read_text()]
    assert leftovers == [], "gemini's per-project dirs of the scratch dir are gone too"
