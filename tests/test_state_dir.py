"""The state directory (~/.clinvk: sessions with users' prompts, run slots, config) is 0700 whichever
component creates it first, under the usual umask 022."""

from __future__ import annotations

import os
import stat

import pytest

from clinvk.config import load_config, set_config_value
from clinvk.gate import SharedGate
from clinvk.server import create_app, gate_dir
from clinvk.sessions import SqliteSessionStore


@pytest.fixture(autouse=True)
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_server_creates_it_0700(tmp_path):
    home = tmp_path / "state" / ".clinvk"
    create_app(load_config(env={"CLINVK_HOME": str(home)}))
    assert mode(home) == 0o700
    for directory in (home / "run", gate_dir(load_config(env={"CLINVK_HOME": str(home)}))):
        assert mode(directory) == 0o700, directory


def test_the_gate_alone_creates_it_0700(tmp_path):
    home = tmp_path / ".clinvk"
    SharedGate(2, 2, 1.0, home / "run" / "h-1" / "gate")
    assert mode(home) == mode(home / "run") == 0o700


def test_the_store_alone_and_config_set_create_it_0700(tmp_path):
    SqliteSessionStore(tmp_path / "a" / ".clinvk" / "sessions.db")
    assert mode(tmp_path / "a" / ".clinvk") == 0o700
    home = tmp_path / "b" / ".clinvk"
    set_config_value(home / "config.yaml", "server.port", "9000")
    assert mode(home) == 0o700
