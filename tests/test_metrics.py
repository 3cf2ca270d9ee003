"""/metrics (prometheus_client): request, run, in-flight and queue series; right across gunicorn
workers (multiprocess mode); never in the way of a stream. Also X-Request-Id and the request log."""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

try:
    from tests.helpers import alive, wait_for
    from tests.server_process import ServerProcess
except ImportError:  # pragma: no cover
    from helpers import alive, wait_for
    from server_process import ServerProcess


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, (label pairs sorted)): value} from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metered(make_app):
    return make_app(server={"metrics_enabled": True, "request_timeout_secs": 2}).test_client()


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.get_data(as_text=True)


def test_metrics_are_off_by_default(client):
    assert client.get("/metrics").status_code == 404


def test_requests_by_route_template_method_and_status(metered, fake_clis):
    session = metered.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"}).get_json()["session_id"]
    metered.get(f"/api/v1/sessions/{session}")
    metered.get("/api/v1/sessions/0123456789abcdef0123456789abcdef")
    metered.get("/no/such/page")
    metered.open("/api/v1/prompt", method="BREW")
    text = scrape(metered)
    assert value(text, "clinvk_http_requests_total", method="POST", route="/api/v1/prompt", status="200") == 1
    route = "/api/v1/sessions/<session_id>"
    assert value(text, "clinvk_http_requests_total", method="GET", route=route, status="200") == 1
    assert value(text, "clinvk_http_requests_total", method="GET", route=route, status="404") == 1
    assert value(text, "clinvk_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert value(text, "clinvk_http_requests_total", method="OTHER", route="<unmatched>", status="405") == 1
    assert session not in text  # ids never become label values
    assert value(text, "clinvk_http_request_duration_seconds_count", method="POST", route="/api/v1/prompt") == 1


def test_cli_runs_by_backend_and_outcome_with_duration(metered, fake_clis):
    metered.post("/api/v1/prompt", json={"backend": "claude", "prompt": "ok"})
    metered.post("/api/v1/prompt", json={"backend": "codex", "prompt": "ok"})
    metered.post("/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_FAIL=500"})
    metered.post("/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_HANG"})  # request_timeout_secs 2
    metered.post("/api/v1/prompt", json={"backend": "claude", "prompt": "ok", "dry_run": True})  # no run
    text = scrape(metered)
    assert value(text, "clinvk_cli_runs_total", backend="claude", tenant="local", outcome="success") == 1
    assert value(text, "clinvk_cli_runs_total", backend="codex", tenant="local", outcome="success") == 1
    assert value(text, "clinvk_cli_runs_total", backend="claude", tenant="local", outcome="error") == 1
    assert value(text, "clinvk_cli_runs_total", backend="claude", tenant="local", outcome="timeout") == 1
    assert value(text, "clinvk_cli_run_duration_seconds_count", backend="claude", tenant="local") == 3
    assert value(text, "clinvk_cli_run_duration_seconds_sum", backend="claude", tenant="local") >= 2.0  # the timeout alone


def test_in_flight_and_queued_runs(make_app, fake_clis):
    client = make_app(server={"metrics_enabled": True, "max_concurrent_runs": 1, "max_queued_runs": 2}).test_client()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_DELAY=2 a"})
        assert wait_for(lambda: value(scrape(client), "clinvk_cli_runs_in_flight") == 1, within=10)
        second = pool.submit(client.post, "/api/v1/prompt", json={"backend": "claude", "prompt": "b"})
        assert wait_for(lambda: value(scrape(client), "clinvk_cli_runs_queued") == 1, within=10)
        assert first.result().status_code == 200 and second.result().status_code == 200
    text = scrape(client)
    assert value(text, "clinvk_cli_runs_in_flight") == 0 and value(text, "clinvk_cli_runs_queued") == 0


def test_refused_requests_are_counted(make_app):
    client = make_app(server={"metrics_enabled": True, "rate_limit_enabled": True, "rate_limit_rps": 1,
                              "rate_limit_burst": 1, "api_keys": ["k-metrics"]}).test_client()
    key = {"X-Api-Key": "k-metrics"}
    client.get("/api/v1/backends")
    client.get("/api/v1/backends", headers=key)
    client.get("/api/v1/backends", headers=key)
    text = client.get("/metrics", headers=key).get_data(as_text=True)
    assert value(text, "clinvk_http_requests_total", method="GET", route="/api/v1/backends", status="401") == 1
    assert value(text, "clinvk_http_requests_total", method="GET", route="/api/v1/backends", status="200") == 1
    assert value(text, "clinvk_http_requests_total", method="GET", route="/api/v1/backends", status="429") == 1


# ----------------------------------------------------------------------------- request id, log

def test_every_response_has_a_request_id(make_app):
    client = make_app(server={"api_keys": ["k"], "max_request_body_bytes": 10}).test_client()
    responses = [client.get("/health"), client.get("/api/v1/backends"), client.get("/nope"),
                 client.post("/api/v1/prompt", data="x" * 50, content_type="application/json"),
                 client.open("/health", method="DELETE")]
    ids = [r.headers["X-Request-Id"] for r in responses]
    assert [r.status_code for r in responses] == [200, 401, 401, 413, 405]  # with keys on, 401 before 404
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert client.get("/health", headers={"X-Request-Id": "trace-abc.123"}).headers["X-Request-Id"] == "trace-abc.123"
    assert client.get("/health", headers={"X-Request-Id": "bad id <x>"}).headers["X-Request-Id"] != "bad id <x>"


def test_one_log_line_per_request(app, fake_clis, caplog):
    caplog.set_level(logging.INFO, logger="clinvk.request")
    client = app.test_client()
    client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"}, headers={"X-Request-Id": "rid-1"},
                environ_base={"REMOTE_ADDR": "198.51.100.4"})
    client.get('/weird path"x', headers={"X-Request-Id": "rid-2"})
    lines = [r.getMessage() for r in caplog.records if r.name == "clinvk.request"]
    assert len(lines) == 2
    assert lines[0].startswith("request method=POST path=/api/v1/prompt route=/api/v1/prompt status=200 bytes=")
    assert "client=198.51.100.4" in lines[0] and "request_id=rid-1" in lines[0] and "duration_ms=" in lines[0]
    assert 'path="/weird path\\"x"' in lines[1] and "route=<unmatched>" in lines[1]


# -------------------------------------------------------------------------- under gunicorn

def stale_counter(directory) -> None:
    """Leave a dead process's counter file behind, as a crashed earlier server would."""
    code = ("from prometheus_client import Counter; "
            "Counter('clinvk_http_requests_total', 'x', ['method', 'route', 'status'])"
            ".labels('GET', '/health', '200').inc(1000)")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert list(directory.glob("counter_*.db"))


@pytest.mark.gunicorn
def test_counts_are_right_across_workers_and_survive_a_worker_restart(fake_clis, tmp_path):
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    stale_counter(multiproc)
    config = {"server": {"metrics_enabled": True}}
    with ServerProcess(tmp_path, config=config, workers=3, env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}) as server:
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(lambda _: server.get("/api/v1/backends", fresh=True), range(24)))
            list(pool.map(lambda i: server.post("/api/v1/prompt", {"backend": "claude", "prompt": f"p{i}"},
                                                fresh=True), range(6)))
        workers = {line["worker"] for line in server.request_log() if line["route"] == "/api/v1/backends"}
        assert len(workers) >= 2, "all requests went to one worker: the test proved nothing"
        scrapes = [server.get("/metrics", fresh=True).text for _ in range(6)]  # whichever worker answers
        for text in scrapes:
            assert value(text, "clinvk_http_requests_total", method="GET", route="/api/v1/backends", status="200") == 24
            assert value(text, "clinvk_http_requests_total", method="POST", route="/api/v1/prompt", status="200") == 6
            assert value(text, "clinvk_cli_runs_total", backend="claude", tenant="local", outcome="success") == 6
        # The stale file of the earlier run was wiped at start: its 1000 are not counted.
        health = value(scrapes[-1], "clinvk_http_requests_total", method="GET", route="/health", status="200")
        assert 1 <= health < 1000
        # A worker that dies keeps its counts in the sum; gunicorn's child_exit marks its gauges dead.
        victim = int(sorted(workers)[0])
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: server.stderr_text().count("Booting worker") >= 4, within=30)
        assert wait_for(lambda: not alive(victim), within=10)
        text = server.get("/metrics", fresh=True).text
        assert value(text, "clinvk_http_requests_total", method="GET", route="/api/v1/backends", status="200") == 24
        assert value(text, "clinvk_cli_runs_in_flight") == 0
    assert server.returncode == 0


@pytest.mark.gunicorn
def test_serve_owns_and_removes_its_metrics_dir(fake_clis, tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    before = set(glob.glob(os.path.join(base, "clinvk-metrics-*")))
    with ServerProcess(tmp_path, config={"server": {"metrics_enabled": True}}, workers=2) as server:
        server.get("/health")
        created = set(glob.glob(os.path.join(base, "clinvk-metrics-*"))) - before
        assert len(created) == 1
        directory = created.pop()
        assert any(name.endswith(".db") for name in os.listdir(directory))
    assert server.returncode == 0
    assert not os.path.exists(directory)


@pytest.mark.gunicorn
def test_metrics_never_buffer_a_stream(fake_clis, tmp_path):
    config = {"server": {"metrics_enabled": True, "keepalive_interval_secs": 60}}
    with ServerProcess(tmp_path, config=config, workers=2) as server:
        body = {"backend": "claude", "prompt": "FAKE_CHUNKS=2 FAKE_CHUNK_DELAY=3 stream me",
                "output_format": "stream-json"}
        with requests.post(server.url + "/api/v1/prompt", json=body, stream=True, timeout=60) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            first = json.loads(next(lines))
            # The first event is here while the CLI still runs (it pauses 3 s between its chunks):
            # nothing between the CLI and the socket held the stream back.
            text = server.get("/metrics", fresh=True).text
            assert value(text, "clinvk_cli_runs_in_flight") == 1
            assert first["type"] in ("init", "message")
            rest = [json.loads(line) for line in lines if line]
        assert rest[-1]["type"] == "done"
        text = server.get("/metrics", fresh=True).text
        assert value(text, "clinvk_cli_runs_in_flight") == 0
        assert value(text, "clinvk_cli_runs_total", backend="claude", tenant="local", outcome="success") == 1
        assert value(text, "clinvk_http_requests_total", method="POST", route="/api/v1/prompt", status="200") == 1
