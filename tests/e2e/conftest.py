"""Fixtures for the real-CLI end-to-end tests: a loopback stub of each vendor API and a clinvk app
whose backends are the genuine pinned CLIs pointed at those stubs."""

from __future__ import annotations

import os

import pytest

from tests import realcli
from tests.stubs import anthropic_stub, gemini_stub, openai_responses_stub

STUBS = {"claude": anthropic_stub, "codex": openai_responses_stub, "gemini": gemini_stub}


@pytest.fixture
def stubs():
    """One echo-mode stub per backend: the model answers ``echo: <last user text>``."""
    started = {name: module.start_stub(mode="echo") for name, module in STUBS.items()}
    yield started
    for stub in started.values():
        stub.stop()


@pytest.fixture
def realcli_config(stubs, tmp_path, monkeypatch):
    """Config overrides that run every backend with its real CLI against its stub, sandboxed with
    bubblewrap (CI installs it; ``run.sandbox: bwrap`` fails rather than run without it).

    Each backend's ``env`` names a prepared CLI home (config, API key variables): the operator's
    home, the template of every session's own home. Variables that could point a CLI at a real
    vendor (keys, base URLs) are removed from the environment the CLIs inherit.
    """
    for name in set(os.environ) - set(realcli.base_env()):
        monkeypatch.delenv(name)
    backends = {}
    for name in realcli.BACKENDS:
        path = realcli.find_cli(name)
        if not path:
            pytest.fail(f"{name} CLI not installed: {realcli.INSTALL_HINT}", pytrace=False)
        env = realcli.offline_env(name, stubs[name].url, tmp_path / f"{name}-home")
        backends[name] = {"command": path, "env": env, "model": realcli.E2E_MODELS[name]}
    return {"backends": backends, "server": {"request_timeout_secs": 120}, "run": {"sandbox": "bwrap"}}


@pytest.fixture
def realcli_app(make_app, realcli_config):
    return make_app(**realcli_config)
