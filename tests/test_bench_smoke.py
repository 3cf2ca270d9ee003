"""bench/run.py --quick as a smoke test: every scenario runs and produces figures.

No timing is asserted (CI machines are shared and noisy); only that the harness works end to end:
the fake compiles, `clinvk serve` starts, and each scenario yields numbers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gunicorn

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {"latency", "throughput", "streaming", "hold", "sessions"}


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json-out", str(out)],
                         cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"bench/run.py --quick failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "added latency" in run.stdout  # the table was printed
    return json.loads(out.read_text())


def test_every_scenario_produced_figures_and_no_harness_error(figures):
    assert figures["mode"] == "quick"
    assert figures["errors"] == {}
    assert set(figures["scenarios"]) == SCENARIOS
    assert figures["checks"]["tcp_nodelay"]["listener"] is True
    assert number(figures["checks"]["fake_startup"]["p50_ms"])
    assert all(number(row["value"]) for row in figures["table"])


def test_latency_figures(figures):
    latency = figures["scenarios"]["latency"]
    assert number(latency["direct"]["p50_ms"])
    expected = {f"{api}/{conn}" for api in ("native_ephemeral", "native_session", "openai", "anthropic")
                for conn in ("keepalive", "newconn")}
    assert set(latency["paths"]) == expected
    for path in latency["paths"].values():
        assert path["n"] > 0
        assert number(path["p50_ms"]) and number(path["p99_ms"]) and number(path["added_p50_ms"])


def test_throughput_figures(figures):
    for fake in ("c_fake", "sh_fake"):
        clients = figures["scenarios"]["throughput"][fake]["clients"]
        assert set(clients) == {"1", "16", "64"}
        for cell in clients.values():
            assert cell["direct"]["ok"] > 0 and cell["server"]["ok"] > 0
            assert number(cell["ratio"])
            assert number(cell["server"]["refused"]) and number(cell["server"]["failed"])


def test_streaming_figures(figures):
    streaming = figures["scenarios"]["streaming"]
    for style in ("direct_pipe", "ndjson", "openai_sse", "anthropic_sse"):
        assert streaming[style]["n"] > 0, style
        assert number(streaming[style]["p99_ms"])


def test_hold_and_sessions_figures(figures):
    hold = figures["scenarios"]["hold"]
    assert hold["max_in_flight"] > 0 and number(hold["kib_per_run"]) and number(hold["errors"])
    sessions = figures["scenarios"]["sessions"]
    assert sessions["sessions"] >= 1000
    for query in sessions["queries"].values():
        assert query["returned"] > 0
        assert number(query["http"]["p99_ms"]) and number(query["store"]["p99_ms"])


def test_peers_comparison_runs_offline_with_clinvk_alone(tmp_path):
    """bench/peers.py --no-peers: its harness (both clinvk paths and the minimal Flask app; latency,
    throughput, CPU, table) works without installing anything; the peers themselves come from PyPI and
    are not run in CI."""
    out = tmp_path / "peers.json"
    cache = tmp_path / "cache"  # must stay empty: nothing is installed
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--quick", "--no-peers", "--cache",
                          str(cache), "--json-out", str(out)],
                         cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"bench/peers.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert not cache.exists()
    figures = json.loads(out.read_text())
    assert figures["errors"] == {} and figures["peers"] == {}
    rows = {row["server"]: row for row in figures["table"]}
    assert set(rows) == {"clinvk, OpenAI path (1 worker)", "clinvk, native ephemeral (1 worker)",
                         "minimal Flask app, OpenAI path (1 worker)"}
    for row in rows.values():
        assert row["errors"] == {}
        for key in ("added_p50_ms", "added_p99_ms", "ratio", "server_cpu_ms", "children_cpu_ms"):
            assert number(row[key]), key
        assert f"| {row['server']} |" in run.stdout  # the markdown table was printed


def test_peers_help_names_the_pinned_peers():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "cli2api 0.2.5" in run.stdout and "agentrelay-cli 0.5.5" in run.stdout
