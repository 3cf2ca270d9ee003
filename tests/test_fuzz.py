"""A fuzz pass over every JSON body the API takes: malformed, wrong types, huge, deeply nested,
odd encodings. The one property: never a 5xx, and every error is in its API's own shape.

Two parts: hand-written nasty bodies against every POST endpoint, and hypothesis mutating a valid
body of each endpoint field by field (derandomized, so CI sees the same cases every run)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BODY_LIMIT = 4 * 1024 * 1024

VALID = {
    "/api/v1/prompt": {"backend": "claude", "prompt": "hi"},
    "/api/v1/parallel": {"tasks": [{"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": "b"}]},
    "/api/v1/chain": {"steps": [{"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": "b {{previous}}"}]},
    "/api/v1/compare": {"prompt": "hi", "backends": ["claude", "codex"]},
    "/openai/v1/chat/completions": {"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
    "/anthropic/v1/messages": {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    "/anthropic/v1/v1/messages": {"model": "gpt", "max_tokens": 16,
                                  "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
}
ENDPOINTS = list(VALID)


@pytest.fixture
def fuzz_client(make_app, fake_clis, monkeypatch):
    monkeypatch.setenv("FAKE_GEMINI_TRUSTED", "1")
    app = make_app(server={"request_timeout_secs": 10, "max_request_body_bytes": BODY_LIMIT,
                           "keepalive_interval_secs": 5})
    return app.test_client()


def check(response, path: str) -> None:
    """No 5xx; errors in the API's shape; success bodies that parse."""
    data = response.get_data()  # drains a stream too: a crash mid-stream raises here
    assert response.status_code < 500, (response.status_code, data[:500])
    if response.status_code >= 400:
        body = json.loads(data)
        if path.startswith("/openai/"):
            assert isinstance(body["error"]["message"], str) and body["error"]["type"]
        elif path.startswith("/anthropic/"):
            assert body["type"] == "error" and isinstance(body["error"]["message"], str)
        else:
            assert response.mimetype == "application/problem+json"
            assert body["status"] == response.status_code and body["error"] and body["message"]
    elif response.mimetype == "application/json":
        json.loads(data)
    else:
        for line in data.decode("utf-8").splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                json.loads(line[6:])
            elif line and not line.startswith(("event:", ":", "data:")):
                json.loads(line)  # NDJSON


def post(client, path: str, data: bytes, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(path, data=data, headers=headers)


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


NASTY = {
    "empty": b"",
    "whitespace": b" \n\t ",
    "null": b"null",
    "array": b"[]",
    "string": b'"hello"',
    "number": b"42",
    "truncated": b'{"prompt": "hi", "backend": "cla',
    "missing value": b'{"prompt": }',
    "trailing garbage": b'{"prompt": "hi"} {"x": 1}',
    "single quotes": b"{'prompt': 'hi'}",
    "bom": b'\xef\xbb\xbf{"prompt": "hi", "backend": "claude"}',
    "invalid utf-8": b'{"prompt": "\xff\xfe\xfd", "backend": "claude"}',
    "utf-16": '{"prompt": "hi", "backend": "claude"}'.encode("utf-16"),
    "nan": b'{"prompt": "hi", "backend": "claude", "max_turns": NaN, "max_tokens": NaN}',
    "infinity": b'{"prompt": "hi", "model": "claude", "max_tokens": Infinity, "temperature": -Infinity}',
    "huge exponent": b'{"prompt": "hi", "backend": "claude", "max_turns": 1e400, "max_tokens": 1e999}',
    "huge integer": b'{"prompt": "hi", "backend": "claude", "max_turns": 1' + b"0" * 5000 + b"}",
    "negative": b'{"prompt": "hi", "backend": "claude", "max_turns": -1, "max_tokens": -99999999999999999999}',
    "float for int": b'{"prompt": "hi", "backend": "claude", "max_turns": 1.5, "max_tokens": 16.0}',
    "lone surrogate": b'{"prompt": "\\ud800x", "backend": "claude"}',
    "surrogate key": b'{"\\udfff": 1, "prompt": "hi", "backend": "claude"}',
    "nul everywhere": b'{"prompt": "a\\u0000b", "backend": "claude\\u0000", "model": "m\\u0000",'
                      b' "system_prompt": "\\u0000", "extra": ["--model=\\u0000"]}',
    "deep array": nested(100_000).encode(),
    "deep in a field": ('{"prompt": "hi", "backend": "claude", "metadata": ' + nested(50_000) + "}").encode(),
    "deep objects": ('{"a":' * 50_000 + "1" + "}" * 50_000).encode(),
    "wide object": ("{" + ",".join(f'"k{i}": {i}' for i in range(100_000)) + "}").encode(),
    "duplicate keys": b'{"prompt": "a", "prompt": "b", "backend": "claude", "backend": "nope"}',
    "long string": json.dumps({"prompt": "x" * 1_000_000, "backend": "nosuch", "model": "nosuch",
                               "messages": "x" * 1000}).encode(),
    "over the limit": b'{"prompt": "' + b"x" * (BODY_LIMIT + 10) + b'"}',
    "wrong types": json.dumps({"prompt": ["hi"], "backend": 1, "messages": {"role": "user"}, "model": [],
                               "tasks": "x", "steps": {}, "backends": "claude", "max_tokens": "16",
                               "stream": "yes", "metadata": [], "tags": {}, "extra": "--x"}).encode(),
    "null fields": json.dumps({k: None for k in ("prompt", "backend", "model", "messages", "tasks", "steps",
                                                 "backends", "max_tokens", "stream", "system")}).encode(),
    "many tasks": json.dumps({"tasks": [{"backend": "claude", "prompt": "x"}] * 10_000,
                              "steps": [{"backend": "claude", "prompt": "x"}] * 10_000,
                              "backends": ["claude"] * 10_000, "prompt": "x",
                              "messages": [{"role": "user", "content": "x"}] * 10_000, "model": "claude",
                              "max_tokens": 5}).encode(),
    "control chars": b'{"prompt": "\\u0001\\u001b[31m\\r\\n", "backend": "claude", "workdir": "\\n"}',
}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("name", list(NASTY))
def test_nasty_bodies_never_5xx(fuzz_client, path, name):
    check(post(fuzz_client, path, NASTY[name]), path)


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None, "application/json; charset=latin-1",
                                          "application/vnd.api+json", "*/*", "application/json\r\nX: y"])
def test_content_types_never_5xx(fuzz_client, path, content_type):
    if content_type and "\r" in content_type:
        content_type = "application/json, text/plain"
    check(post(fuzz_client, path, json.dumps(VALID[path]).encode(), content_type), path)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_non_post_methods_never_5xx(fuzz_client, path):
    for method in ("GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW"):
        response = fuzz_client.open(path, method=method, data=b"{}")
        assert response.status_code < 500


# ------------------------------------------------------------------------------------ hypothesis

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                      st.sampled_from(["", " ", "claude", "codex", "gemini", "gpt-4o", "user", "assistant",
                                       "system", "tool", "stream-json", "json", "none", "full", "default",
                                       "/etc", "/tmp", "../..", "--help", "-p", "{{previous}}", "\u0000"]))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


DROP = object()
PLAUSIBLE = {"stream": st.booleans(), "output_format": st.sampled_from(["json", "stream-json", "text", "xml"]),
             "dry_run": st.booleans(), "ephemeral": st.booleans(), "max_turns": st.integers(-1, 3),
             "approval_mode": st.sampled_from(["default", "auto", "none", "x"]),
             "sandbox_mode": st.sampled_from(["default", "read-only", "full", "x"]),
             "workdir": st.sampled_from(["/tmp", "/etc", "relative", "/nope", ""]),
             "session_id": st.sampled_from(["", "0" * 32, "abc", "../x"]),
             "extra": st.lists(st.sampled_from(["--model", "x", "--verbose", "--yolo", "-p"]), max_size=3),
             "fail_fast": st.booleans(), "max_parallel": st.integers(-1, 5), "temperature": st.floats(-1, 3),
             "system": st.one_of(st.text(max_size=10), st.lists(st.fixed_dictionaries(
                 {"type": st.just("text"), "text": st.text(max_size=10)}), max_size=2)),
             "stop": st.one_of(st.none(), st.text(max_size=5)), "n": st.integers(0, 3),
             "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
             "tags": st.lists(st.text(max_size=5), max_size=2)}


def paths_of(value, prefix=()) -> list[tuple]:
    """Every place in a JSON value: dict keys and list indexes, nested."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        out.append(prefix + (key,))
        out += paths_of(item, prefix + (key,))
    return out


def apply(body: dict, path: tuple, action: str, new) -> None:
    target = body
    for key in path[:-1]:
        target = target[key]
    if action == "drop":
        del target[path[-1]]
    else:
        target[path[-1]] = new


def mutated(valid: dict) -> st.SearchStrategy[dict]:
    """The valid body with up to two places replaced by anything or dropped, plus sometimes more
    fields with plausible (or odd) values: near-valid bodies reach every check, and past them."""
    paths = paths_of(valid)
    mutation = st.tuples(st.sampled_from(paths), st.sampled_from(["replace", "replace", "drop"]), json_values)
    more = st.lists(st.sampled_from(sorted(PLAUSIBLE)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.one_of(PLAUSIBLE[k], PLAUSIBLE[k], json_values) for k in keys}))

    def build(mutations, extra):
        body = json.loads(json.dumps(valid))
        for path, action, new in mutations:
            try:
                apply(body, path, action, new)
            except (KeyError, IndexError, TypeError):  # an earlier mutation removed the place
                pass
        if isinstance(body, dict):
            body.update(extra)
        return body

    return st.builds(build, st.lists(mutation, max_size=2), more)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_mutated_bodies_never_5xx(fuzz_client, path):
    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(body=mutated(VALID[path]))
    def run(body):
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        check(post(fuzz_client, path, raw), path)

    run()


def test_the_valid_bodies_really_are_valid(fuzz_client, fake_clis):
    """The mutations start from bodies that work, so they explore the paths past validation."""
    for path, body in VALID.items():
        response = post(fuzz_client, path, json.dumps(body).encode())
        assert response.status_code == 200, (path, response.get_data()[:300])


def with_options(valid: dict) -> st.SearchStrategy[dict]:
    """The valid body plus options from PLAUSIBLE: these mostly pass validation and run the (fake) CLI,
    streaming included."""
    keys = st.lists(st.sampled_from(sorted(PLAUSIBLE)), min_size=1, max_size=4, unique=True)
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: PLAUSIBLE[k] for k in ks})).map(
        lambda extra: {**json.loads(json.dumps(valid)), **extra})


@pytest.mark.parametrize("path", ENDPOINTS)
def test_valid_bodies_with_options_never_5xx(fuzz_client, path):
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(body=with_options(VALID[path]))
    def run(body):
        check(post(fuzz_client, path, json.dumps(body).encode()), path)

    run()
