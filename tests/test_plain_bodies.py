"""The fast path for plain request bodies (clinvk.specs.plain) loads exactly what the marshmallow schema
loads, or leaves the body to the schema: compared on generated bodies around each hot endpoint's
fields (derandomized, so CI sees the same cases every run), and on the bodies SDKs send."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from clinvk.server.anthropic.views import plain_request as anthropic_plain
from clinvk.server.anthropic.views import request_schema as anthropic_schema
from clinvk.server.native.views import plain_prompt, prompt_schema
from clinvk.server.openai.views import plain_request as openai_plain
from clinvk.server.openai.views import request_schema as openai_schema
from clinvk.specs import PromptRequest

HOT = {
    "openai": (openai_schema, openai_plain),
    "anthropic": (anthropic_schema, anthropic_plain),
    "native": (prompt_schema, plain_prompt),
}

# Values near every check's edges: types, bounds, patterns, choices.
WORDS = ["claude", "gpt-4o", "gemini", "", "-x", "a b", "claude\n", "\x00", "user", "assistant", "system",
         "developer", "tool", "function", "stream-json", "json", "default", "auto", "none", "read-only", "0a1b",
         "ABC", "abc\n", "x" * 201, "/tmp/w"]
SCALARS = st.one_of(st.none(), st.booleans(), st.sampled_from(WORDS),
                    st.integers(min_value=-3, max_value=1003), st.sampled_from([2 ** 53, 2 ** 70, -(2 ** 60)]),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4))
PARTS = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image"]), "text": SCALARS}), max_size=2)
MESSAGE = st.dictionaries(st.sampled_from(["role", "content", "name", "cache_control"]),
                          st.one_of(SCALARS, PARTS), max_size=4)
VALUES = st.one_of(SCALARS, st.lists(MESSAGE, max_size=3), st.lists(st.sampled_from(WORDS), max_size=2),
                   st.dictionaries(st.sampled_from(["include_usage", "other"]), SCALARS, max_size=2))


@st.composite
def body(draw, name: str):
    """One of the bodies clients send, with up to three fields (of the body or of one of its
    messages) set to another value or removed."""
    schema, _ = HOT[name]
    sent = copy.deepcopy(draw(st.sampled_from(SDK_BODIES[name])))
    names = sorted(schema.load_fields) + ["unknown_field"]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        messages = sent.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict) and draw(st.booleans()):
            target, key = draw(st.sampled_from(messages)), draw(st.sampled_from(["role", "content", "name", "extra"]))
        else:
            target, key = sent, draw(st.sampled_from(names))
        if isinstance(target, dict):
            if draw(st.integers(min_value=0, max_value=4)) == 0:
                target.pop(key, None)
            else:
                target[key] = draw(VALUES)
    return sent


def schema_load(schema, data):
    try:
        return schema.load(data)
    except ValidationError:
        return "refused"


@pytest.mark.parametrize("name", sorted(HOT))
@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_body_the_fast_path_loads_loads_the_same_through_the_schema(name, data):
    schema, plain = HOT[name]
    sent = data.draw(body(name))
    fast = plain.load(sent)
    if fast is not None:
        assert schema_load(schema, sent) == fast, sent


SDK_BODIES = {
    "openai": [
        {"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]},
        {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
         "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.2, "max_tokens": 64,
         "user": "u-1", "some_new_sdk_field": {"x": 1}},
        {"model": "claude", "messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "go"}],
         "n": 1, "seed": 7, "top_p": 1},
    ],
    "anthropic": [
        {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        {"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "Be brief.", "stream": True,
         "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                      {"role": "user", "content": "again"}], "temperature": 1},
    ],
    "native": [
        {"backend": "claude", "prompt": "hi"},
        {"backend": "codex", "prompt": "hi", "ephemeral": True, "output_format": "stream-json", "model": "o4-mini",
         "approval_mode": "auto", "max_turns": 3},
        {"session_id": "0a1b2c", "prompt": "again"},
    ],
}


@pytest.mark.parametrize("name,sent", [(name, sent) for name, bodies in SDK_BODIES.items() for sent in bodies])
def test_the_bodies_clients_send_take_the_fast_path_and_load_as_through_the_schema(name, sent):
    schema, plain = HOT[name]
    fast = plain.load(sent)
    assert fast is not None
    assert fast == schema.load(sent)
    if name == "native":
        assert isinstance(fast, PromptRequest)


@pytest.mark.parametrize("name,sent", [
    ("openai", {"model": "claude", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("openai", {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "tools": []}),
    ("openai", {"model": "-rf", "messages": [{"role": "user", "content": "hi"}]}),
    ("openai", {"model": "claude", "messages": []}),
    ("openai", {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "temperature": float("nan")}),
    ("anthropic", {"model": "claude", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}),
    ("native", {"backend": "claude", "prompt": "hi", "extra": ["--verbose"]}),
    ("native", {"backend": "claude", "prompt": "hi", "typo": 1}),
    ("native", {"prompt": "hi"}),
    ("native", {"backend": "claude", "prompt": "hi", "ephemeral": "true"}),
])
def test_what_the_fast_path_is_not_sure_of_goes_to_the_schema(name, sent):
    """Content parts, fields it has no check for, unknown fields the schema refuses, bad values: the
    schema decides (and words any error)."""
    assert HOT[name][1].load(sent) is None
