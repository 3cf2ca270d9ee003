"""API keys (env and gopass), CORS, trusted proxies, request-body limits, the workdir policy and
dangerous flags — in-process where the app alone decides, under `clinvk serve` (gunicorn) where
the real server matters (sockets, workers, startup)."""

from __future__ import annotations

import hmac
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from werkzeug.datastructures import Headers

from clinvk import apikeys
from clinvk.apikeys import ApiKeyError, ApiKeys
from clinvk.server.http.clientip import client_ip, parse_networks
from clinvk.server.http.cors import origin_pattern

try:
    from tests.helpers import wait_for
    from tests.server_process import ServerExited, ServerProcess, read_response
except ImportError:  # pragma: no cover - run from inside tests/
    from helpers import wait_for
    from server_process import ServerExited, ServerProcess, read_response

KEY1 = "sk-test-0123456789abcdef"
KEY2 = "sk-test-fedcba9876543210"
ORIGIN = "http://localhost:5173"


@pytest.fixture
def keyed(make_app):
    return make_app(server={"api_keys": [KEY1, KEY2]}).test_client()


def prompt(client, body=None, **kwargs):
    return client.post("/api/v1/prompt", json=body or {"backend": "claude", "prompt": "hi"}, **kwargs)


# ------------------------------------------------------------------------------------- API keys

def test_without_keys_every_route_is_open(client, fake_clis):
    assert client.get("/api/v1/backends").status_code == 200
    assert prompt(client).json["output"] == "echo: hi"


ERROR_SHAPES = [
    ("GET", "/api/v1/backends", None, "native"),
    ("GET", "/openai/v1/models", None, "openai"),
    ("POST", "/openai/v1/chat/completions", {"model": "claude", "messages": [{"role": "user", "content": "x"}]},
     "openai"),
    ("POST", "/anthropic/v1/messages",
     {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "anthropic"),
]


def assert_error_shape(response, status: int, style: str) -> str:
    """The message of an error response, after checking it has its API's documented shape."""
    assert response.status_code == status, response.data
    body = response.get_json(force=True)
    if style == "openai":
        assert response.mimetype == "application/json"
        assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
        return body["error"]["message"]
    if style == "anthropic":
        assert response.mimetype == "application/json"
        assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
        return body["error"]["message"]
    assert response.mimetype == "application/problem+json"
    assert body["status"] == status and body["error"] and body["message"] == body["detail"]
    return body["message"]


@pytest.mark.parametrize("method,path,body,style", ERROR_SHAPES)
def test_missing_key_is_401_in_the_api_style_of_the_path(keyed, fake_clis, method, path, body, style):
    response = keyed.open(path, method=method, json=body)
    message = assert_error_shape(response, 401, style)
    assert "missing API key" in message
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if style == "openai":
        assert response.get_json()["error"]["type"] == "authentication_error"
    if style == "anthropic":
        assert response.get_json()["error"]["type"] == "authentication_error"
    assert fake_clis.calls() == []


def test_wrong_key_is_401_and_runs_nothing(keyed, fake_clis):
    response = prompt(keyed, headers={"X-Api-Key": "sk-test-wrong"})
    assert assert_error_shape(response, 401, "native") == "invalid API key"
    assert "sk-test-wrong" not in response.get_data(as_text=True)
    assert fake_clis.calls() == []


@pytest.mark.parametrize("headers", [
    {"X-Api-Key": KEY1}, {"X-Api-Key": f"  {KEY2} "}, {"Authorization": f"Bearer {KEY1}"},
    {"Authorization": f"bearer {KEY2}"}, {"Authorization": f"BEARER   {KEY1}  "},
])
def test_either_header_carries_any_configured_key(keyed, fake_clis, headers):
    assert keyed.get("/api/v1/backends", headers=headers).status_code == 200
    assert prompt(keyed, headers=headers).json["output"] == "echo: hi"


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Basic {KEY1}"}, {"Authorization": KEY1}, {"X-Api-Key": ""}, {"Authorization": "Bearer "},
    {"X-Api-Key": KEY1[:-1]}, {"X-Api-Key": KEY1 + "x"}, {"X-Api-Key": f"{KEY1},{KEY2}"},
])
def test_anything_else_is_refused(keyed, headers):
    assert keyed.get("/api/v1/backends", headers=headers).status_code == 401


def test_x_api_key_wins_over_a_valid_bearer_token(keyed):
    response = keyed.get("/api/v1/backends", headers={"X-Api-Key": "nope", "Authorization": f"Bearer {KEY1}"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/docs", "/docs/swagger-ui.css",
                                  "/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"])
def test_health_docs_and_spec_need_no_key(keyed, path):
    assert keyed.get(path).status_code == 200


def test_metrics_need_a_key_when_keys_are_on(make_app):
    client = make_app(server={"api_keys": [KEY1], "metrics_enabled": True}).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY1}"}).status_code == 200


def test_keys_never_reach_the_logs(keyed, fake_clis, caplog):
    caplog.set_level(logging.DEBUG)
    prompt(keyed, headers={"X-Api-Key": KEY1})
    prompt(keyed, headers={"Authorization": f"Bearer {KEY2}"})
    prompt(keyed, headers={"X-Api-Key": "sk-test-guess"})
    text = caplog.text
    assert "request method=POST" in text  # the request log is there ...
    for secret in (KEY1, KEY2, "sk-test-guess"):  # ... without any key, good or bad
        assert secret not in text
    assert apikeys.key_id(KEY1) in text  # only the key's short id, to tell callers apart


def test_every_key_is_compared_whichever_matches(monkeypatch):
    keys = ApiKeys([f"key-{i}" for i in range(5)])
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(apikeys.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for presented in ("key-0", "key-4", "nope", ""):
        calls.clear()
        keys.match(presented)
        assert len(calls) == 5  # no early exit: the time does not tell which key matched, or how far
    assert keys.match("key-3") == apikeys.key_id("key-3")
    assert keys.match("key-") is None


def test_keys_from_the_environment_variable(make_config, monkeypatch):
    from clinvk.config import load_config
    config = load_config(env={"CLINVK_HOME": str(make_config().home), "CLINVK_API_KEYS": f" {KEY1} ,, {KEY2},"})
    keys = ApiKeys.from_config(config)
    assert len(keys) == 2 and keys.source == "CLINVK_API_KEYS"
    assert keys.match(KEY2) and not keys.match("")


# ------------------------------------------------------------------------------------------ gopass

class FakeGopass:
    """A `gopass` executable on PATH (a real subprocess) whose answer the test controls."""

    def __init__(self, root: Path, monkeypatch):
        self.bin = root / "gopass-bin"
        self.bin.mkdir()
        self.log = root / "gopass.log"
        self.out = root / "gopass.out"
        self.err = root / "gopass.err"
        self.code = root / "gopass.code"
        self.sleep = root / "gopass.sleep"
        script = self.bin / "gopass"
        script.write_text(f"""#!/bin/sh
echo "$*" >> '{self.log}'
if [ -f '{self.sleep}' ]; then sleep "$(cat '{self.sleep}')"; fi
cat '{self.out}' 2>/dev/null
cat '{self.err}' >&2 2>/dev/null
exit "$(cat '{self.code}' 2>/dev/null || echo 0)"
""")
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")

    def answer(self, out: str = "", err: str = "", code: int = 0, sleep: float | None = None) -> None:
        self.out.write_text(out)
        self.err.write_text(err)
        self.code.write_text(str(code))
        if sleep is not None:
            self.sleep.write_text(str(sleep))
        elif self.sleep.exists():
            self.sleep.unlink()

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def gopass(tmp_path, monkeypatch):
    return FakeGopass(tmp_path, monkeypatch)


def test_gopass_keys_protect_the_api(gopass, make_app, fake_clis):
    gopass.answer(f"{KEY1},{KEY2}\n")
    client = make_app(server={"api_keys_gopass_path": "clinvk/server/api-keys"}).test_client()
    assert gopass.calls() == ["show --password clinvk/server/api-keys"]
    assert prompt(client).status_code == 401
    assert prompt(client, headers={"X-Api-Key": KEY2}).json["output"] == "echo: hi"


def test_environment_keys_win_and_gopass_is_not_run(gopass, make_app):
    gopass.answer(KEY1)
    client = make_app(server={"api_keys": [KEY2], "api_keys_gopass_path": "clinvk/keys"}).test_client()
    assert gopass.calls() == []
    assert client.get("/api/v1/backends", headers={"X-Api-Key": KEY2}).status_code == 200
    assert client.get("/api/v1/backends", headers={"X-Api-Key": KEY1}).status_code == 401


@pytest.mark.parametrize("answer,expected", [
    ({"code": 11, "err": "gpg: decryption failed: No secret key\n"},
     "gopass show --password clinvk/keys failed with exit code 11: gpg: decryption failed: No secret key"),
    ({"out": " \n"}, "the entry holds no API keys"),
])
def test_a_gopass_failure_stops_startup_with_a_clear_error(gopass, make_app, answer, expected):
    gopass.answer(**answer)
    with pytest.raises(ApiKeyError) as failure:
        make_app(server={"api_keys_gopass_path": "clinvk/keys"})
    assert expected in str(failure.value)


def test_gopass_that_hangs_is_killed_after_the_timeout(gopass):
    gopass.answer(KEY1, sleep=30)
    with pytest.raises(ApiKeyError, match=r"no answer within 0.5 s"):
        ApiKeys(gopass_path="clinvk/keys", timeout=0.5)


def test_gopass_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ApiKeyError, match="gopass command is not on PATH"):
        ApiKeys(gopass_path="clinvk/keys")


def test_gopass_keys_are_read_again_so_a_rotated_key_takes_effect(gopass):
    gopass.answer(KEY1)
    keys = ApiKeys(gopass_path="clinvk/keys", refresh_secs=3600)
    assert keys.match(KEY1) and len(gopass.calls()) == 1

    def refresh_due() -> None:  # as if refresh_secs had passed
        calls = len(gopass.calls())
        keys._next_refresh = 0
        keys.match("anything")  # a request triggers the re-read, in the background
        assert wait_for(lambda: len(gopass.calls()) > calls and not keys._refreshing, within=10)

    gopass.answer(KEY2)
    refresh_due()
    assert keys.match(KEY2) and keys.match(KEY1) is None
    gopass.answer(code=1, err="store locked")
    refresh_due()
    assert keys.match(KEY2)  # a failed re-read keeps the keys in use


@pytest.mark.gunicorn
def test_serve_loads_gopass_keys_once_for_all_workers(gopass, fake_clis, tmp_path):
    gopass.answer(f"{KEY1}\n")
    config = {"server": {"api_keys_gopass_path": "team/clinvk"}}
    with ServerProcess(tmp_path, config=config, workers=2) as server:
        assert server.get("/api/v1/backends", fresh=True).status_code == 401
        for _ in range(4):
            assert server.get("/api/v1/backends", fresh=True, headers={"X-Api-Key": KEY1}).status_code == 200
        response = server.post("/api/v1/prompt", {"backend": "claude", "prompt": "hi"},
                               headers={"Authorization": f"Bearer {KEY1}"})
        assert response.json()["output"] == "echo: hi"
    assert gopass.calls() == ["show --password team/clinvk"]  # in the master, before the workers
    assert KEY1 not in server.stderr_text() + server.stdout_text()
    assert server.returncode == 0


@pytest.mark.gunicorn
def test_serve_exits_1_with_one_line_when_gopass_fails(gopass, fake_clis, tmp_path):
    gopass.answer(code=1, err="Error: entry is not in the password store\n")
    server = ServerProcess(tmp_path, config={"server": {"api_keys_gopass_path": "team/clinvk"}}, wait_ready=False)
    server.start()
    assert server.wait_exit(30) == 1
    assert server.stderr_text().strip() == ("Error: gopass show --password team/clinvk failed with exit code 1: "
                                            "Error: entry is not in the password store")
    assert "Traceback" not in server.stderr_text()


# -------------------------------------------------------------------------------------------- CORS

def preflight(client, origin=ORIGIN, method="POST", path="/api/v1/prompt", headers="content-type, x-api-key"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def test_preflight_succeeds_without_a_key_when_keys_are_on(keyed, fake_clis):
    response = preflight(keyed)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert {"content-type", "x-api-key"} <= {h.strip() for h in
                                             response.headers["Access-Control-Allow-Headers"].split(",")}
    assert response.headers["Access-Control-Max-Age"] == "300"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert fake_clis.calls() == []


def test_preflight_from_a_disallowed_origin_gets_no_allow_headers(keyed):
    response = preflight(keyed, origin="https://evil.example")
    assert response.status_code == 200
    assert not any(h.startswith("Access-Control-Allow") for h in response.headers.keys())


@pytest.mark.parametrize("origin,allowed", [
    ("http://localhost:5173", True), ("http://localhost:80", True), ("http://127.0.0.1:8080", True),
    ("HTTP://LOCALHOST:3000", True), ("http://localhost", False), ("https://localhost:3000", False),
    ("http://localhost.evil.com:3000", False), ("http://localhost:1@evil.com", False),
    ("http://localhost:3000/x", False), ("http://127.0.0.1.evil.com:80", False), ("null", False),
])
def test_default_origins_are_localhost_only(client, origin, allowed):
    response = client.get("/health", headers={"Origin": origin})
    assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
    if not allowed:
        assert "Access-Control-Allow-Origin" not in response.headers


def test_no_origin_no_cors_headers(client):
    assert "Access-Control-Allow-Origin" not in client.get("/health").headers


def test_cors_headers_are_on_errors_too(make_app):
    client = make_app(server={"api_keys": [KEY1], "max_request_body_bytes": 100}).test_client()
    unauthorized = client.get("/api/v1/backends", headers={"Origin": ORIGIN})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-Id" in unauthorized.headers["Access-Control-Expose-Headers"]
    too_large = client.post("/api/v1/prompt", data=b"{" + b" " * 200 + b"}", content_type="application/json",
                            headers={"Origin": ORIGIN, "X-Api-Key": KEY1})
    assert too_large.status_code == 413
    assert too_large.headers["Access-Control-Allow-Origin"] == ORIGIN
    missing = client.get("/no/such/path", headers={"Origin": ORIGIN, "X-Api-Key": KEY1})
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_configured_origins_credentials_and_max_age(make_app):
    client = make_app(server={"cors_allowed_origins": ["https://app.example.com", "https://*.corp.example"],
                              "cors_allow_credentials": True, "cors_max_age": 600}).test_client()
    response = preflight(client, origin="https://app.example.com")
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert preflight(client, origin="https://a.b.corp.example").headers["Access-Control-Allow-Origin"]
    assert "Access-Control-Allow-Origin" not in preflight(client, origin="http://localhost:3000").headers
    assert "Access-Control-Allow-Origin" not in preflight(client, origin="https://corp.example").headers


def test_star_allows_any_origin(make_app):
    client = make_app(server={"cors_allowed_origins": ["*"]}).test_client()
    response = client.get("/health", headers={"Origin": "https://anything.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://anything.example"
    assert "Origin" in response.headers["Vary"]


def test_origin_pattern_unit():
    assert origin_pattern("http://localhost:*").match("http://localhost:0")
    assert not origin_pattern("http://localhost:*").match("http://localhost:0/")
    assert origin_pattern("https://example.com/").match("https://example.com")


# ------------------------------------------------------------------------------- trusted proxies

@pytest.mark.parametrize("peer,headers,trusted,expected", [
    ("198.51.100.7", {"X-Forwarded-For": "203.0.113.1"}, [], "198.51.100.7"),
    ("198.51.100.7", {"X-Forwarded-For": "203.0.113.1"}, ["10.0.0.0/8"], "198.51.100.7"),
    ("10.1.2.3", {"X-Forwarded-For": "203.0.113.1"}, ["10.0.0.0/8"], "203.0.113.1"),
    # A client's own X-Forwarded-For is before the proxy's entry: the rightmost untrusted hop wins.
    ("10.1.2.3", {"X-Forwarded-For": "1.2.3.4, 203.0.113.1"}, ["10.0.0.0/8"], "203.0.113.1"),
    ("10.1.2.3", {"X-Forwarded-For": "203.0.113.1, 10.9.9.9"}, ["10.0.0.0/8"], "203.0.113.1"),
    ("10.1.2.3", {"X-Forwarded-For": "10.5.5.5, 10.9.9.9"}, ["10.0.0.0/8"], "10.5.5.5"),
    ("10.1.2.3", {"X-Forwarded-For": "not-an-ip, 10.9.9.9"}, ["10.0.0.0/8"], "10.9.9.9"),
    ("10.1.2.3", {"X-Forwarded-For": "garbage"}, ["10.0.0.0/8"], "10.1.2.3"),
    ("10.1.2.3", {"X-Real-IP": "203.0.113.5"}, ["10.1.2.3"], "203.0.113.5"),
    ("198.51.100.7", {"X-Real-IP": "203.0.113.5"}, ["10.0.0.0/8"], "198.51.100.7"),
    ("10.1.2.3", {"X-Forwarded-For": "[2001:db8::1]:4711"}, ["10.0.0.0/8"], "2001:db8::1"),
    ("::1", {"X-Forwarded-For": "203.0.113.1:8080"}, ["::1"], "203.0.113.1"),
    ("::ffff:10.1.2.3", {"X-Forwarded-For": "203.0.113.1"}, ["10.0.0.0/8"], "203.0.113.1"),
])
def test_client_ip(peer, headers, trusted, expected):
    assert client_ip(peer, Headers(headers), parse_networks(trusted)) == expected


def request_log_clients(caplog) -> list[str]:
    return [r.getMessage().split(" client=")[1].split()[0] for r in caplog.records
            if r.name == "clinvk.request"]


def test_only_trusted_peers_may_set_the_client_ip(make_app, caplog):
    caplog.set_level(logging.INFO, logger="clinvk.request")
    client = make_app(server={"trusted_proxies": ["10.0.0.0/8"]}).test_client()
    spoof = {"X-Forwarded-For": "203.0.113.66", "X-Real-IP": "203.0.113.67"}
    client.get("/health", headers=spoof, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    client.get("/health", headers=spoof, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert request_log_clients(caplog) == ["198.51.100.7", "203.0.113.66"]


@pytest.mark.gunicorn
@pytest.mark.parametrize("trusted,expected", [(["127.0.0.1"], "203.0.113.9"), (["10.0.0.0/8"], "127.0.0.1"),
                                               ([], "127.0.0.1")])
def test_trusted_proxies_under_gunicorn(fake_clis, tmp_path, trusted, expected):
    with ServerProcess(tmp_path, config={"server": {"trusted_proxies": trusted}}) as server:
        server.get("/health", headers={"X-Forwarded-For": "203.0.113.9", "X-Request-Id": "xff-probe"})
        assert wait_for(lambda: any(line.get("request_id") == "xff-probe" for line in server.request_log()), 10)
    line = next(line for line in server.request_log() if line.get("request_id") == "xff-probe")
    assert line["client"] == expected


@pytest.mark.gunicorn
def test_preflight_and_cors_on_401_under_gunicorn(fake_clis, tmp_path):
    with ServerProcess(tmp_path, env={"CLINVK_API_KEYS": KEY1}, workers=2) as server:
        response = server.request("OPTIONS", "/openai/v1/chat/completions", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "authorization" in response.headers["Access-Control-Allow-Headers"]
        refused = server.post("/openai/v1/chat/completions", {"model": "claude", "messages": []},
                              headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert refused.json()["error"]["type"] == "authentication_error"


# ------------------------------------------------------------------------------------ body limits

def test_too_large_body_is_413_in_each_api_style(make_app, fake_clis):
    client = make_app(server={"max_request_body_bytes": 64}).test_client()
    big = {"model": "claude", "messages": [{"role": "user", "content": "x" * 100}], "max_tokens": 5}
    assert_error_shape(client.post("/openai/v1/chat/completions", json=big), 413, "openai")
    assert_error_shape(client.post("/anthropic/v1/messages", json=big), 413, "anthropic")
    message = assert_error_shape(client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x" * 100}),
                                 413, "native")
    assert "at most 64" in message
    assert fake_clis.calls() == []


@pytest.fixture
def small_limit_server(fake_clis, tmp_path):
    with ServerProcess(tmp_path, config={"server": {"max_request_body_bytes": 1000}}, workers=2) as server:
        yield server


@pytest.mark.gunicorn
def test_declared_length_over_the_limit_is_413_before_the_body_is_sent(small_limit_server, fake_clis):
    sock = small_limit_server.connect()
    with sock:
        # Headers only: the 413 must come without the server waiting for (or reading) a byte of body.
        sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 104857600\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["error"] == "request_too_large"
    assert "x-request-id" in headers
    assert fake_clis.calls() == []


@pytest.mark.gunicorn
def test_chunked_body_over_the_limit_is_413(small_limit_server, fake_clis):
    sock = small_limit_server.connect()
    with sock:
        sock.sendall(b"POST /anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b'{"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "' + b"x" * 600
        for _ in range(3):  # 1800+ bytes in all, in chunks of ~680
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            chunk = b"y" * 600
        status, headers, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["type"] == "request_too_large"
    assert fake_clis.calls() == []


@pytest.mark.gunicorn
@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_of_exactly_the_limit_is_accepted(small_limit_server, fake_clis, chunked):
    payload = json.dumps({"backend": "claude", "prompt": "hi"}).encode()
    payload = payload[:-1] + b" " * (1000 - len(payload)) + b"}"
    assert len(payload) == 1000
    if chunked:
        response = small_limit_server.request("POST", "/api/v1/prompt", data=iter([payload[:500], payload[500:]]),
                                              headers={"Content-Type": "application/json"})
    else:
        response = small_limit_server.post("/api/v1/prompt", payload)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "echo: hi"
    over = small_limit_server.post("/api/v1/prompt", payload + b" ")
    assert over.status_code == 413


# ---------------------------------------------------------------------------------- workdir policy

def assert_refused(response, field: str, fake_clis) -> str:
    assert response.status_code in (400, 422), response.data
    body = response.get_json()
    assert body["errors"][0]["field"] == field, body
    assert fake_clis.calls() == [], "a refused request must not start a CLI"
    return body["message"]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "allowed" / "project").mkdir(parents=True)
    (root / "allowed-evil").mkdir()
    (root / "outside").mkdir()
    (root / "allowed" / "to-outside").symlink_to(root / "outside")
    (root / "outside" / "to-project").symlink_to(root / "allowed" / "project")
    (root / "allowed" / "to-etc").symlink_to("/etc")
    (root / "a-file").write_text("x")
    return root


REFUSED = "is not a directory this server may run in"  # blocked, outside, missing: one answer


@pytest.mark.parametrize("workdir,reason", [
    ("relative/dir", "must be an absolute path"),
    ("/definitely/not/here", REFUSED),
    ("/etc", REFUSED),
    ("/etc/../etc/ssl", REFUSED),
    ("/proc/self", REFUSED),
])
def test_workdir_refused_without_starting_a_cli(client, fake_clis, workdir, reason):
    message = assert_refused(prompt(client, {"backend": "claude", "prompt": "hi", "workdir": workdir}),
                             "body.workdir", fake_clis)
    assert reason in message


def test_symlink_to_a_blocked_dir_is_refused(client, fake_clis, tree):
    message = assert_refused(prompt(client, {"backend": "claude", "prompt": "hi",
                                             "workdir": str(tree / "allowed" / "to-etc")}), "body.workdir", fake_clis)
    assert REFUSED in message and "/etc" not in message.replace(str(tree), ""), "the link's target stays unsaid"


def test_a_file_is_not_a_workdir(client, fake_clis, tree):
    assert "not a directory" in assert_refused(
        prompt(client, {"backend": "claude", "prompt": "hi", "workdir": str(tree / "a-file")}), "body.workdir",
        fake_clis)


@pytest.mark.parametrize("sub", ["outside", "allowed-evil", "allowed/to-outside"])
def test_outside_the_allowed_prefixes_is_refused(make_app, fake_clis, tree, sub):
    client = make_app(server={"allowed_workdir_prefixes": [str(tree / "allowed")]}).test_client()
    message = assert_refused(prompt(client, {"backend": "claude", "prompt": "hi", "workdir": str(tree / sub)}),
                             "body.workdir", fake_clis)
    assert REFUSED in message


@pytest.mark.parametrize("sub", ["allowed", "allowed/project", "outside/to-project"])
def test_inside_the_allowed_prefixes_runs_in_the_resolved_dir(make_app, fake_clis, tree, sub):
    client = make_app(server={"allowed_workdir_prefixes": [str(tree / "allowed")]}).test_client()
    response = prompt(client, {"backend": "claude", "prompt": "hi", "workdir": str(tree / sub)})
    assert response.status_code == 200, response.data
    assert fake_clis.last()["cwd"] == os.path.realpath(tree / sub)


def test_blocked_prefixes_are_configurable(make_app, fake_clis, tree):
    client = make_app(server={"blocked_workdir_prefixes": [str(tree / "outside")]}).test_client()
    assert_refused(prompt(client, {"backend": "claude", "prompt": "hi", "workdir": str(tree / "outside")}),
                   "body.workdir", fake_clis)
    assert prompt(client, {"backend": "claude", "prompt": "hi", "workdir": str(tree / "allowed")}).status_code == 200


# ---------------------------------------------------------------------------------- dangerous flags

DANGEROUS = [("claude", "approval_mode", "none", "--permission-mode", "bypassPermissions"),
             ("gemini", "approval_mode", "none", "--approval-mode", "yolo"),
             ("codex", "sandbox_mode", "full", "-s", "danger-full-access")]


@pytest.mark.parametrize("backend,field,value,flag,flag_value", DANGEROUS)
def test_dangerous_modes_are_refused_unless_the_operator_allows_them(client, fake_clis, backend, field, value,
                                                                     flag, flag_value):
    message = assert_refused(prompt(client, {"backend": backend, "prompt": "hi", field: value}),
                             f"body.{field}", fake_clis)
    assert f"backends.{backend}.allow_dangerous_flags" in message


@pytest.mark.parametrize("backend,field,value,flag,flag_value", DANGEROUS)
def test_dangerous_modes_pass_when_allowed(make_app, fake_clis, monkeypatch, backend, field, value, flag,
                                           flag_value):
    monkeypatch.setenv("IS_SANDBOX", "1")  # the fake claude, like the real one, refuses bypass as root otherwise
    monkeypatch.setenv("FAKE_GEMINI_TRUSTED", "1")
    client = make_app(backends={backend: {"allow_dangerous_flags": True}}).test_client()
    response = prompt(client, {"backend": backend, "prompt": "hi", field: value})
    assert response.status_code == 200, response.data
    argv = fake_clis.last()["argv"]
    assert argv[argv.index(flag) + 1] == flag_value


@pytest.mark.parametrize("extra,field", [
    (["--dangerously-skip-permissions"], "body.extra[0]"),
    (["--model", "x", "--yolo"], "body.extra[2]"),
    (["rm -rf /"], "body.extra[0]"),
])
def test_extra_flags_outside_the_allowlist_are_refused(client, fake_clis, extra, field):
    backend = "gemini" if "--yolo" in extra else "claude"
    assert_refused(prompt(client, {"backend": backend, "prompt": "hi", "extra": extra}), field, fake_clis)


def test_dangerous_flags_through_the_openai_api_start_nothing(client, fake_clis):
    # The compat APIs have no way to ask for them at all; unknown fields are ignored, never passed on.
    response = client.post("/openai/v1/chat/completions", json={
        "model": "claude", "messages": [{"role": "user", "content": "hi"}], "approval_mode": "none",
        "extra": ["--dangerously-skip-permissions"]})
    if response.status_code == 200:
        argv = fake_clis.last()["argv"]
        assert "bypassPermissions" not in argv and "--dangerously-skip-permissions" not in argv
    else:
        assert response.status_code == 400 and fake_clis.calls() == []


def test_server_error_response_never_leaks_internals(keyed):
    body = keyed.get("/api/v1/backends").get_json()
    assert KEY1 not in json.dumps(body)


def test_serve_refuses_without_a_traceback_when_gopass_is_missing(fake_clis, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / "gopass").exists()))
    server = ServerProcess(tmp_path, config={"server": {"api_keys_gopass_path": "x/y"}}, wait_ready=False)
    server.start()
    assert server.wait_exit(30) == 1
    assert "gopass command is not on PATH" in server.stderr_text()
    with pytest.raises(ServerExited):
        server.wait_until_ready()


# ------------------------------------------------------------------------------------------ /docs

def test_docs_are_served_offline_from_local_assets(client):
    import re
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/docs/") for a in assets), assets  # nothing from a CDN
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
    bundle = client.get("/docs/swagger-ui-bundle.js")
    assert bundle.mimetype in ("text/javascript", "application/javascript") and len(bundle.data) > 500_000
    init = client.get("/docs/swagger-initializer.js").get_data(as_text=True)
    assert 'url: "/openapi.json"' in init and "validatorUrl: null" in init  # no call to validator.swagger.io
    assert client.get("/docs/../config.py").status_code == 404
    assert client.get("/docs/swagger-ui.js.map").status_code == 404  # only the listed assets
