"""A prompt is only ever a prompt: what clinvk sends each CLI, checked against what the pinned CLIs
were measured to run as a command (tests/fixtures/prompt-commands/)."""

from __future__ import annotations

import json

import pytest

from clinvk.backends import BACKENDS, RunSpec
from clinvk.cli_env import cli_environment
from clinvk.config import BackendConfig

try:
    from tests.conftest import FIXTURES
except ImportError:  # pragma: no cover
    from conftest import FIXTURES

MEASURED = json.loads((FIXTURES / "prompt-commands" / "prompt-commands.json").read_text())
RAN = ("yes", "refused")


def sent(backend: str, prompt: str) -> str:
    return BACKENDS[backend].build(RunSpec(prompt=prompt), backend, False).stdin_text


def probes(backend: str, predicate) -> list[dict]:
    found = [p for p in MEASURED[backend] if predicate(p)]
    assert found, f"no {backend} probe matches"
    return found


@pytest.mark.parametrize("backend", ["claude", "gemini"])
def test_slash_commands_the_cli_ran_reach_it_as_text(backend):
    # The measurement behind the rewrite: with a leading space the same command was text ("@" aside).
    assert all(p["executed_as_command"] == "no" for p in probes(
        backend, lambda p: p["prompt"][:1] in " \t\n\xa0" and p["prompt"].lstrip()[:1] == "/" and "@" not in p["prompt"]))
    for probe in probes(backend, lambda p: p["executed_as_command"] in RAN and p["prompt"].startswith("/")):
        text = sent(backend, probe["prompt"])
        assert text == " " + probe["prompt"], probe["name"]


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_prompts_measured_as_text_are_sent_unchanged(backend):
    for probe in probes(backend, lambda p: p["executed_as_command"] == "no" and not p["prompt"].startswith("/")):
        assert sent(backend, probe["prompt"]) == probe["prompt"], probe["name"]


def test_codex_runs_no_prompt_command_and_gets_every_prompt_verbatim():
    assert all(p["executed_as_command"] == "no" for p in probes("codex", lambda p: p["prompt"].lstrip()[:1] in "/!@#"))
    for probe in MEASURED["codex"]:
        assert sent("codex", probe["prompt"]) == probe["prompt"]


def test_claude_file_mentions_are_off_in_its_environment():
    # Measured: @path attaches any readable file (outside the workdir too) unless this is set.
    assert all(p["executed_as_command"] == "yes" for p in probes(
        "claude", lambda p: p["name"] in ("at_outside_relative", "at_outside_abs")))
    assert probes("claude", lambda p: p["name"] == "at_outside_rel_disable_env")[0]["executed_as_command"] == "no"
    env = cli_environment("claude", BackendConfig("claude"), {"PATH": "/usr/bin"})
    assert env["CLAUDE_CODE_DISABLE_FILE_MENTIONS"] == "1"
