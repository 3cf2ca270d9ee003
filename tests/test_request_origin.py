"""Drive-by requests: a JSON body needs a JSON content type (415), a state-changing request from
another site is refused before anything runs (403), and a Host the server does not answer to is 400
(DNS rebinding) — in each API's own error shape."""

from __future__ import annotations

import json
import logging

import pytest

from clinvk.config import ConfigError

PROMPT = {"backend": "claude", "prompt": "hi"}
STYLES = [
    ("/api/v1/prompt", PROMPT, "native"),
    ("/openai/v1/chat/completions", {"model": "claude", "messages": [{"role": "user", "content": "x"}]}, "openai"),
    ("/anthropic/v1/messages",
     {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "anthropic"),
]


def message_of(response) -> str:
    body = response.get_json(force=True)
    error = body.get("error")
    return error["message"] if isinstance(error, dict) else body["message"]


# -------------------------------------------------------------------------------- content type

@pytest.mark.parametrize("path,body,style", STYLES)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_without_a_json_content_type_is_415(client, fake_clis, path, body, style, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(path, data=json.dumps(body), headers=headers)
    assert response.status_code == 415, response.data
    assert "Content-Type" in message_of(response)
    assert fake_clis.calls() == []


def test_json_content_types_with_parameters_and_suffixes_pass(client, fake_clis):
    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.x+json"):
        response = client.post("/api/v1/prompt", data=json.dumps(PROMPT), headers={"Content-Type": content_type})
        assert response.status_code == 200, (content_type, response.data)


# ------------------------------------------------------------------------------------- origin

@pytest.mark.parametrize("path,body,style", STYLES)
@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost.evil.example:8080"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
])
def test_cross_site_state_changing_requests_are_403_and_run_nothing(client, fake_clis, path, body, style, headers):
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 403, response.data
    assert "origin" in message_of(response).lower()
    assert fake_clis.calls() == []


def test_cross_site_delete_is_refused_too(client, fake_clis):
    assert client.post("/api/v1/prompt", json=PROMPT).status_code == 200
    sessions = client.get("/api/v1/sessions").get_json()["sessions"]
    response = client.delete(f"/api/v1/sessions/{sessions[0]['id']}", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert len(client.get("/api/v1/sessions").get_json()["sessions"]) == 1


@pytest.mark.parametrize("headers", [
    {"Origin": "http://localhost:5173"},            # an allowed CORS origin (default patterns)
    {"Origin": "http://127.0.0.1:3000", "Sec-Fetch-Site": "same-site"},
    {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},  # the server's own origin (/docs)
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},
    {},                                             # curl, SDKs
])
def test_allowed_and_same_origin_requests_run(client, fake_clis, headers):
    response = client.post("/api/v1/prompt", json=PROMPT, headers=headers)
    assert response.status_code == 200, response.data


def test_same_origin_behind_a_trusted_proxy_uses_the_forwarded_host(make_app, fake_clis):
    client = make_app(server={"trusted_proxies": ["127.0.0.1"], "allowed_hosts": ["clinvk.example.org"]}).test_client()
    headers = {"Origin": "https://clinvk.example.org", "Host": "127.0.0.1:8080",
               "X-Forwarded-Host": "clinvk.example.org", "X-Forwarded-Proto": "https"}
    assert client.post("/api/v1/prompt", json=PROMPT, headers=headers).status_code == 200
    # nginx passing the public Host through (proxy_set_header Host $host) works the same
    headers = {"Origin": "https://clinvk.example.org", "Host": "clinvk.example.org"}
    assert client.post("/api/v1/prompt", json=PROMPT, headers=headers).status_code == 200


def test_forwarded_host_from_an_untrusted_peer_does_not_make_a_request_same_origin(client, fake_clis):
    headers = {"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example"}
    assert client.post("/api/v1/prompt", json=PROMPT, headers=headers).status_code == 403


def test_reads_and_preflights_are_not_refused(client):
    assert client.get("/api/v1/backends", headers={"Origin": "https://evil.example"}).status_code == 200
    preflight = client.options("/api/v1/prompt", headers={"Origin": "http://localhost:5173",
                                                          "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200


# ---------------------------------------------------------------------------------------- Host

@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io", "localhost.evil.example"])
def test_a_foreign_host_is_400(client, fake_clis, host):
    response = client.post("/api/v1/prompt", json=PROMPT, headers={"Host": host})
    assert response.status_code == 400, response.data
    assert "Host" in message_of(response) and "server.allowed_hosts" in message_of(response)
    assert client.get("/api/v1/backends", headers={"Host": host}).status_code == 400
    assert fake_clis.calls() == []


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST"])
def test_loopback_hosts_are_answered_by_default(client, host):
    assert client.get("/api/v1/backends", headers={"Host": host}).status_code == 200


def test_configured_hosts_and_wildcard(make_app):
    client = make_app(server={"allowed_hosts": ["api.example.org", ".internal.example"]}).test_client()
    assert client.get("/health", headers={"Host": "api.example.org:443"}).status_code == 200
    assert client.get("/health", headers={"Host": "x.internal.example"}).status_code == 200
    assert client.get("/health", headers={"Host": "localhost"}).status_code == 400
    anything = make_app(server={"allowed_hosts": ["*"]}).test_client()
    assert anything.get("/health", headers={"Host": "whatever.example"}).status_code == 200


def test_a_public_bind_needs_allowed_hosts(make_app, caplog):
    with pytest.raises(ConfigError, match="server.allowed_hosts"):
        make_app(server={"host": "0.0.0.0"})
    with caplog.at_level(logging.WARNING):
        make_app(server={"host": "0.0.0.0", "allowed_hosts": ["*"]})
    assert "allowed_hosts" in caplog.text and "DNS rebinding" in caplog.text


def test_openapi_documents_403_and_415(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/prompt"]["post"]
    assert "403" in operation["responses"] and "415" in operation["responses"]
    assert "403" in spec["paths"]["/openai/v1/chat/completions"]["post"]["responses"]
