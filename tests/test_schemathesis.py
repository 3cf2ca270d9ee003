"""schemathesis against /openapi.json of a live `clinvk serve` (gunicorn, 2 workers, the fake CLIs
on PATH): every operation, generated and mutated inputs, stateful sequences. No 5xx, no status,
content type, header or body that its documentation does not allow.

Checks left out, on purpose: ``positive_data_acceptance`` (the schemas document the shape of a
request; some rules are checked by the service, such as "backend must be one whose CLI is
configured", and a schema-valid request that breaks them is rightly a 4xx) and the auth checks
that need a security scheme to be mandatory (keys are optional; the second run covers 401).

The figures (operations, cases, failures) are printed and written next to the report.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

try:
    from tests.server_process import ServerProcess
except ImportError:  # pragma: no cover
    from server_process import ServerProcess

pytestmark = pytest.mark.gunicorn

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,unsupported_method,allow_header_conformance,"
          "missing_required_header,use_after_free,ensure_resource_availability")


def schemathesis_run(server: ServerProcess, report, examples: int, *extra: str) -> dict:
    argv = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks", CHECKS,
            "--max-examples", str(examples), "--generation-deterministic", "--no-color", "--workers", "1",
            "--request-timeout", "30", "--report", "json", "--report-json-path", str(report), *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert report.exists(), proc.stdout[-5000:] + proc.stderr[-3000:]
    result = json.loads(report.read_text())
    summary = (f"schemathesis: {result['operations']['tested']}/{result['operations']['total']} operations, "
               f"{result['test_cases']['generated']} cases, {len(result['failures'])} failure kinds, "
               f"{result['test_cases']['with_failures']} failing cases, {len(result['errors'])} errors")
    print(summary)
    (report.parent / (report.stem + ".summary.txt")).write_text(summary + "\n")
    assert proc.returncode == 0 and not result["failures"] and not result["errors"], \
        summary + "\n" + proc.stdout[-20000:]
    assert result["operations"]["tested"] == result["operations"]["total"] >= 13
    return result


def test_schemathesis_finds_nothing(fake_clis, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_GEMINI_TRUSTED", "1")
    config = {"server": {"request_timeout_secs": 15}}
    with ServerProcess(tmp_path, config=config, workers=2, threads=16) as server:
        result = schemathesis_run(server, tmp_path / "schemathesis.json", 50)
    assert result["test_cases"]["generated"] >= 1000
    assert "Traceback" not in server.stderr_text()


def test_schemathesis_with_keys_and_rate_limits(fake_clis, tmp_path):
    """Without a key every protected operation answers 401, and soon 429: both must be documented,
    in each API's own error shape, with their headers (WWW-Authenticate, Retry-After)."""
    config = {"server": {"rate_limit_enabled": True, "rate_limit_rps": 20, "rate_limit_burst": 40}}
    with ServerProcess(tmp_path, config=config, workers=2, env={"CLINVK_API_KEYS": "sk-schemathesis"}) as server:
        result = schemathesis_run(server, tmp_path / "schemathesis-keys.json", 20)
    assert result["test_cases"]["generated"] >= 200
    assert fake_clis.calls() == []
