"""Shared fixtures: an isolated clinvk home, the fake CLIs on PATH, and app/client factories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clinvk.config import load_config
from clinvk.server import create_app

try:  # the fake CLIs' knobs (FAKE_*) reach them through clinvk's CLI environment allowlist
    from tests.server_process import with_fake_knobs
except ImportError:  # pragma: no cover - run from inside tests/
    from server_process import with_fake_knobs

TESTS = Path(__file__).resolve().parent
FAKES = TESTS / "fakes"
FIXTURES = TESTS / "fixtures"


class FakeCLIs:
    """The fake claude/codex/gemini on PATH for this test, and what they logged."""

    def __init__(self, root: Path):
        self.home = root / "fake-home"
        self.log = root / "fake-cli.log"
        self.home.mkdir()

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def last(self) -> dict:
        calls = self.calls()
        assert calls, "no fake CLI was run"
        return calls[-1]


@pytest.fixture
def fake_clis(tmp_path, monkeypatch) -> FakeCLIs:
    fakes = FakeCLIs(tmp_path)
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_CLI_HOME", str(fakes.home))
    monkeypatch.setenv("FAKE_CLI_LOG", str(fakes.log))
    for name in list(os.environ):
        if name.startswith(("FAKE_CLI_DELAY", "FAKE_CLI_FAIL", "FAKE_CLI_HANG", "FAKE_CLI_REPLY")):
            monkeypatch.delenv(name)
    return fakes


@pytest.fixture
def clinvk_home(tmp_path) -> Path:
    home = tmp_path / "clinvk-home"
    home.mkdir()
    return home


@pytest.fixture
def make_config(clinvk_home):
    """Config with defaults + ``overrides`` (nested dict), isolated from the user's files and env.
    Runs are not sandboxed unless ``run={"sandbox": ...}`` says so: the fake CLIs log to the test's
    own directory, which the sandbox hides."""

    def make(**overrides):
        # Not sandboxed unless a test says so: the fake CLIs log to the test's directory, which the sandbox hides.
        overrides["run"] = {"sandbox": "off", **overrides.get("run", {})}
        return load_config(env={"CLINVK_HOME": str(clinvk_home)}, overrides=with_fake_knobs(overrides))

    return make


@pytest.fixture
def make_app(make_config, fake_clis):
    pools = []

    def make(**overrides):
        app = create_app(make_config(**overrides))
        app.config["TESTING"] = True
        pools.append(app.extensions["clinvk.service"].warm_pool)
        return app

    yield make
    for pool in pools:  # the warm CLIs of this test's apps end with it
        if pool is not None:
            pool.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
