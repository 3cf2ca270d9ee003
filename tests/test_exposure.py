"""A server reachable from elsewhere without keys says so at start-up; unauthenticated /health tells
nothing about the machine (no paths, no exception text)."""

from __future__ import annotations

import logging

import pytest

from clinvk import serve
from clinvk.config import load_config


@pytest.fixture
def started(monkeypatch, clinvk_home):
    """``serve.run(config)`` up to the point gunicorn would start; returns its exit code."""
    ran = []
    # setup_logging would reconfigure the process-wide "clinvk" logger for every later test.
    monkeypatch.setattr(serve, "setup_logging", lambda: None)
    monkeypatch.setattr(serve, "check_port", lambda host, port: None)
    monkeypatch.setattr(serve.ClinvkApplication, "run", lambda self: ran.append(self) or None)

    def start(**server):
        config = load_config(env={"CLINVK_HOME": str(clinvk_home)}, overrides={"server": server})
        code = serve.run(config)
        return code if code is not None else (0 if ran else None)

    return start


def test_public_bind_without_keys_warns_naming_the_risk(started, caplog):
    with caplog.at_level(logging.WARNING, logger="clinvk"):
        assert started(host="0.0.0.0", allowed_hosts=["clinvk.example.org"]) == 0
    warning = [r.getMessage() for r in caplog.records if "no API keys" in r.getMessage()]
    assert warning and "0.0.0.0" in warning[0] and "run the coding agents" in warning[0]


@pytest.mark.parametrize("server", [{"host": "127.0.0.1"}, {"host": "::1"},
                                    {"host": "0.0.0.0", "allowed_hosts": ["x.example"], "api_keys": ["sk-1"]}])
def test_no_warning_on_loopback_or_with_keys(started, caplog, server):
    with caplog.at_level(logging.WARNING, logger="clinvk"):
        assert started(**server) == 0
    assert not [r for r in caplog.records if "no API keys" in r.getMessage()]


def test_public_bind_without_allowed_hosts_does_not_start(started, capsys):
    assert started(host="0.0.0.0") == 1
    assert "server.allowed_hosts" in capsys.readouterr().err


def test_health_reveals_no_path_or_exception_text(app, clinvk_home):
    service = app.extensions["clinvk.service"]

    def broken():
        raise OSError(f"unable to open database file {clinvk_home}/sessions.db: permission denied")

    service.store.check = broken
    response = app.test_client().get("/health")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and response.get_json()["status"] == "unhealthy"
    assert str(clinvk_home) not in body and "permission denied" not in body and "sessions.db" not in body
    assert response.get_json()["session_store"]["available"] is False
