"""Tests for clinvk.config: defaults, layering, validation messages, `config set`, the example file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from clinvk.config import (
    BACKEND_NAMES, DEFAULT_BLOCKED_WORKDIR_PREFIXES, EXAMPLE_CONFIG, BackendConfig, Config,
    ConfigError, TenantConfig, default_config_path, load_config, set_config_value,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """An isolated environment: the real one must not leak in (tests run with CLINVK_* set)."""
    return {"CLINVK_HOME": str(home), "PATH": os.environ.get("PATH", "")}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error(**kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    return info.value


# ---------------------------------------------------------------------------------------- defaults

def test_defaults(env, home):
    cfg = load_config(env=env)
    assert cfg.home == home and cfg.config_path is None
    assert cfg.sessions_db == home / "sessions.db"
    assert cfg.default_backend == "claude"
    assert set(cfg.backends) == set(BACKEND_NAMES)
    assert all(cfg.backend(n).name == n and cfg.backend(n).enabled for n in BACKEND_NAMES)
    assert cfg.unified_flags.approval_mode == "default" and cfg.unified_flags.command_timeout_secs == 0
    assert cfg.session.auto_resume is False and cfg.session.retention_days == 30
    assert cfg.output.format == "json" and cfg.parallel.max_workers == 3 and cfg.parallel.max_tasks == 32
    s = cfg.server
    assert (s.host, s.port, s.workers, s.threads) == ("127.0.0.1", 8080, 1, 64)
    assert (s.request_timeout_secs, s.read_timeout_secs, s.write_timeout_secs, s.idle_timeout_secs) == \
        (300, 30, 300, 120)
    assert s.keepalive_interval_secs == 15.0 and s.api_keys == [] and s.rate_limit_storage_uri == "memory://"
    assert s.cors_allowed_origins == ["http://localhost:*", "http://127.0.0.1:*"]
    assert s.blocked_workdir_prefixes == list(DEFAULT_BLOCKED_WORKDIR_PREFIXES)
    assert (s.max_concurrent_runs, s.max_queued_runs, s.queue_timeout_secs) == (16, 64, 30.0)
    assert s.max_request_body_bytes == 10485760


def test_default_instances_do_not_share_mutables():
    a, b = Config(home=Path("/a")), Config(home=Path("/b"))
    a.server.trusted_proxies.append("10.0.0.1")
    a.backends["claude"].env["X"] = "1"
    assert b.server.trusted_proxies == [] and b.backends["claude"].env == {}


def test_config_fills_missing_backends():
    cfg = Config(home=Path("/h"), backends={"codex": BackendConfig(name="codex", model="m")})
    assert set(cfg.backends) == set(BACKEND_NAMES) and cfg.backend("codex").model == "m"
    with pytest.raises(ConfigError, match="backends.nope"):
        cfg.backend("nope")


def test_default_config_path(home, tmp_path):
    assert default_config_path({"CLINVK_HOME": str(home)}) == home / "config.yaml"
    assert default_config_path({"CLINVK_CONFIG": str(tmp_path / "c.yaml")}) == tmp_path / "c.yaml"
    assert default_config_path({}) == Path.home() / ".clinvk" / "config.yaml"


def test_missing_default_file_is_fine_but_explicit_must_exist(env, tmp_path):
    assert load_config(env=env).config_path is None
    e = error(path=tmp_path / "nope.yaml", env=env)
    assert "nope.yaml" in str(e) and "not found" in str(e)
    e = error(env={**env, "CLINVK_CONFIG": str(tmp_path / "gone.yaml")})
    assert "gone.yaml" in str(e)


# ------------------------------------------------------------------------------------------ file

def test_default_file_in_home_is_loaded(env, home):
    write(home / "config.yaml", "server:\n  port: 9001\n")
    cfg = load_config(env=env)
    assert cfg.server.port == 9001 and cfg.config_path == home / "config.yaml"


def test_config_yml_fallback_and_clinvk_config(env, home, tmp_path):
    write(home / "config.yml", "default_backend: gemini\n")
    assert load_config(env=env).default_backend == "gemini"
    other = write(tmp_path / "other.yaml", "default_backend: codex\n")
    cfg = load_config(env={**env, "CLINVK_CONFIG": str(other)})
    assert cfg.default_backend == "codex" and cfg.config_path == other


def test_file_overlays_defaults_field_by_field(env, tmp_path):
    f = write(tmp_path / "c.yaml", """
default_backend: codex
unified_flags: {approval_mode: auto, dry_run: true, max_turns: 5}
backends:
  claude:
    command: /opt/claude
    env: {ANTHROPIC_BASE_URL: "http://x", DEBUG: 1}
    extra_flags: ["--verbose"]
    approval_mode: none
    allow_dangerous_flags: true
  gemini: null
session: {retention_days: 0, default_tags: [a, b]}
output: {format: stream-json}
parallel:
server:
  host: 0.0.0.0
  keepalive_interval_secs: 2
  trusted_proxies: ["10.0.0.0/8", "::1"]
  allowed_workdir_prefixes: [/srv/work]
  rate_limit_enabled: true
  rate_limit_storage_uri: "redis://:pw@localhost:6379"
  request_timeout_secs: 60
""")
    cfg = load_config(f, env=env)
    assert cfg.config_path == f and cfg.default_backend == "codex"
    assert (cfg.unified_flags.approval_mode, cfg.unified_flags.dry_run, cfg.unified_flags.max_turns) == \
        ("auto", True, 5)
    assert cfg.unified_flags.sandbox_mode == "default"  # untouched
    c = cfg.backend("claude")
    assert c.command == "/opt/claude" and c.env == {"ANTHROPIC_BASE_URL": "http://x", "DEBUG": "1"}
    assert c.extra_flags == ["--verbose"] and c.approval_mode == "none" and c.allow_dangerous_flags
    assert cfg.backend("gemini") == BackendConfig(name="gemini")
    assert cfg.session.retention_days == 0 and cfg.session.default_tags == ["a", "b"]
    assert cfg.output.format == "stream-json"
    s = cfg.server
    assert s.host == "0.0.0.0" and s.port == 8080 and s.keepalive_interval_secs == 2.0
    assert isinstance(s.keepalive_interval_secs, float)
    assert s.trusted_proxies == ["10.0.0.0/8", "::1"] and s.allowed_workdir_prefixes == ["/srv/work"]
    assert s.request_timeout_secs == 60 and s.rate_limit_enabled


def test_empty_and_comment_only_files(env, tmp_path):
    assert load_config(write(tmp_path / "a.yaml", ""), env=env).server.port == 8080
    assert load_config(write(tmp_path / "b.yaml", "# nothing\nserver:\n"), env=env).server.port == 8080


def test_empty_blocked_list_means_defaults(env, tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", "server: {blocked_workdir_prefixes: []}\n"), env=env)
    assert cfg.server.blocked_workdir_prefixes == list(DEFAULT_BLOCKED_WORKDIR_PREFIXES)
    cfg = load_config(write(tmp_path / "d.yaml", "server: {blocked_workdir_prefixes: [/x]}\n"), env=env)
    assert cfg.server.blocked_workdir_prefixes == ["/x"]


# ------------------------------------------------------------------------------------------ env

def test_env_named_variables(env, tmp_path):
    f = write(tmp_path / "c.yaml", "server: {api_keys_gopass_path: from/file}\n"
                                   "backends: {codex: {model: file-model}}\n")
    cfg = load_config(f, env={**env, "CLINVK_BACKEND": "gemini", "CLINVK_CLAUDE_MODEL": "opus",
                              "CLINVK_CODEX_MODEL": "gpt-5", "CLINVK_GEMINI_MODEL": "",
                              "CLINVK_API_KEYS": " k1, ,k2,", "CLINVK_API_KEYS_GOPASS_PATH": "a/b"})
    assert cfg.default_backend == "gemini"
    assert [cfg.backend(n).model for n in BACKEND_NAMES] == ["opus", "gpt-5", ""]
    assert cfg.server.api_keys == ["k1", "k2"] and cfg.server.api_keys_gopass_path == "a/b"


def test_default_backend_env_wins_over_backend_env(env):
    cfg = load_config(env={**env, "CLINVK_BACKEND": "codex", "CLINVK_DEFAULT_BACKEND": "gemini"})
    assert cfg.default_backend == "gemini"


def test_env_nested_variables(env):
    cfg = load_config(env={
        **env, "CLINVK_SERVER__PORT": " 9000 ", "CLINVK_UNIFIED_FLAGS__DRY_RUN": "yes",
        "CLINVK_BACKENDS__CLAUDE__COMMAND": "/x/claude",
        "CLINVK_SERVER__TRUSTED_PROXIES": "10.0.0.1, 10.1.0.0/16",
        "CLINVK_SERVER__CORS_ALLOWED_ORIGINS": "", "CLINVK_SERVER__QUEUE_TIMEOUT_SECS": "2.5",
        "CLINVK_BACKENDS__CODEX__ENV": "A=1,B=x=y", "CLINVK_BACKENDS__GEMINI__ENV__GEMINI_API_KEY": "s",
        "CLINVK_SESSION__AUTO_RESUME": "TRUE", "CLINVK_OUTPUT__SHOW_TIMING": "1",
        "CLINVK_TEST_WHATEVER": "ignored", "CLINVK_TEST__NESTED": "ignored", "CLINVK_DEBUG": "1",
    })
    assert cfg.server.port == 9000 and cfg.unified_flags.dry_run is True
    assert cfg.backend("claude").command == "/x/claude"
    assert cfg.server.trusted_proxies == ["10.0.0.1", "10.1.0.0/16"]
    assert cfg.server.cors_allowed_origins == [] and cfg.server.queue_timeout_secs == 2.5
    assert cfg.backend("codex").env == {"A": "1", "B": "x=y"}
    assert cfg.backend("gemini").env == {"GEMINI_API_KEY": "s"}
    assert cfg.session.auto_resume is True and cfg.output.show_timing is True


@pytest.mark.parametrize("var, value, needle", [
    ("CLINVK_SERVER__PORT", "abc", "server.port: must be an integer between 1 and 65535 (got 'abc')"),
    ("CLINVK_SERVER__PORT", "70000", "server.port: must be an integer between 1 and 65535"),
    ("CLINVK_UNIFIED_FLAGS__DRY_RUN", "maybe", "unified_flags.dry_run: must be true or false"),
    ("CLINVK_SERVER__PROT", "1", "server.prot: unknown key (did you mean 'server.port'?)"),
    ("CLINVK_SERVR__PORT", "1", "did you mean CLINVK_SERVER__"),
    ("CLINVK_SERVER_PORT", "1", "use CLINVK_SERVER__PORT"),
    ("CLINVK_BACKENDS__CLAUDE", "x", "backends.claude: is a section"),
    ("CLINVK_BACKENDS__CLAUDE__ENV", "novalue", "backends.claude.env: must be a mapping"),
    ("CLINVK_BACKEND", "gpt", "default_backend: must be one of 'claude', 'codex', 'gemini' (got 'gpt')"),
    ("CLINVK_SERVER__QUEUE_TIMEOUT_SECS", "nan", "server.queue_timeout_secs: must be a number >= 0"),
])
def test_env_errors_name_key_and_variable(env, var, value, needle):
    e = error(env={**env, var: value})
    assert needle in str(e)
    assert var in str(e)


# ------------------------------------------------------------------------------------ overrides

def test_overrides_and_precedence(env, tmp_path):
    f = write(tmp_path / "c.yaml", "server: {port: 1111, host: filehost, threads: 8}\n"
                                   "output: {format: text}\n")
    env2 = {**env, "CLINVK_SERVER__PORT": "2222", "CLINVK_SERVER__HOST": "envhost"}
    cfg = load_config(f, env=env2, overrides={"server": {"port": 3333, "host": None}})
    # defaults < file < env < overrides; None in overrides means "flag not given"
    assert (cfg.server.port, cfg.server.host, cfg.server.threads) == (3333, "envhost", 8)
    assert cfg.output.format == "text" and cfg.server.workers == 1
    cfg = load_config(f, env=env2, overrides={"server.workers": 4, "server": {"api_keys": ["k"]}})
    assert cfg.server.workers == 4 and cfg.server.api_keys == ["k"] and cfg.server.port == 2222


def test_overrides_are_validated(env):
    assert error(env=env, overrides={"server": {"port": 0}}).key == "server.port"
    e = error(env=env, overrides={"server": {"workers": "4"}})
    assert "server.workers: must be an integer >= 1 (got '4')" in str(e)


# --------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("text, key, needle", [
    ("server: {port: 'abc'}", "server.port", "must be an integer between 1 and 65535 (got 'abc')"),
    ("server: {port: 0}", "server.port", "between 1 and 65535 (got 0)"),
    ("server: {port: 8080.0}", "server.port", "must be an integer"),
    ("server: {port: true}", "server.port", "must be an integer"),
    ("server: {workers: 0}", "server.workers", ">= 1"),
    ("server: {threads: 0}", "server.threads", ">= 1"),
    ("server: {request_timeout_secs: 0}", "server.request_timeout_secs",
     "does not mean the default: remove the key to use the default (300)"),
    ("server: {idle_timeout_secs: -5}", "server.idle_timeout_secs", "> 0"),
    ("server: {keepalive_interval_secs: 0}", "server.keepalive_interval_secs", "a number > 0"),
    ("server: {rate_limit_enabled: true, rate_limit_rps: 0}", "server.rate_limit_rps",
     "when server.rate_limit_enabled"),
    ("server: {rate_limit_burst: 0}", "server.rate_limit_burst", ">= 1"),
    ("server: {rate_limit_storage_uri: redis}", "server.rate_limit_storage_uri", "storage URI"),
    ("server: {max_concurrent_runs: 0}", "server.max_concurrent_runs", ">= 1"),
    ("server: {max_queued_runs: -1}", "server.max_queued_runs", ">= 0"),
    ("server: {max_request_body_bytes: -1}", "server.max_request_body_bytes", ">= 0"),
    ("server: {trusted_proxies: [10.0.0.1, nonsense]}", "server.trusted_proxies[1]", "IP address or CIDR"),
    ("server: {allowed_workdir_prefixes: [rel/path]}", "server.allowed_workdir_prefixes[0]", "absolute path"),
    ("server: {blocked_workdir_prefixes: [/ok, x]}", "server.blocked_workdir_prefixes[1]", "absolute path"),
    ("server: {trusted_proxies: 10.0.0.1}", "server.trusted_proxies", "must be a list of strings"),
    ("server: {api_keys: [secret]}", "server.api_keys", "CLINVK_API_KEYS"),
    ("server: {api_keys_gopass_path: 'a b;rm'}", "server.api_keys_gopass_path", "gopass path"),
    ("server: {host: ''}", "server.host", "host name or IP"),
    ("server: {metrics_enabled: 'yes'}", "server.metrics_enabled", "must be true or false (got 'yes')"),
    ("server: [1, 2]", "server", "must be a mapping"),
    ("session: {retention_days: -1}", "session.retention_days", ">= 0"),
    ("parallel: {max_workers: 0}", "parallel.max_workers", ">= 1"),
    ("output: {format: xml}", "output.format", "one of 'default', 'text', 'json', 'stream-json'"),
    ("unified_flags: {approval_mode: yolo}", "unified_flags.approval_mode", "one of"),
    ("unified_flags: {sandbox_mode: open}", "unified_flags.sandbox_mode", "one of"),
    ("default_backend: gpt", "default_backend", "one of 'claude', 'codex', 'gemini'"),
    ("backends: {claude: {sandbox_mode: bad}}", "backends.claude.sandbox_mode", "one of ''"),
    ("backends: {claude: {env: {A: true}}}", "backends.claude.env", "mapping of names to strings"),
    ("backends: {claude: {model: 5}}", "backends.claude.model", "must be a string (a model name"),
    ("backends: {claude: {model: '--add-dir'}}", "backends.claude.model", "no leading '-'"),
    ("backends: {gpt: {model: x}}", "backends.gpt", "unknown key"),
    ("backends: {claude: {name: x}}", "backends.claude.name", "unknown key"),
    ("server: {prot: 1}", "server.prot", "did you mean 'server.port'?"),
    ("port: 9000", "port", "did you mean 'server.port'?"),
    ("sever: {port: 1}", "sever", "did you mean 'server'?"),
    ("server: {zzz: 1}", "server.zzz", "valid keys here: host, port"),
])
def test_file_errors_name_their_key(env, tmp_path, text, key, needle):
    f = write(tmp_path / "c.yaml", text + "\n")
    e = error(path=f, env=env)
    assert e.key == key
    assert str(e).startswith(key + ":"), str(e)
    assert needle in str(e)
    assert str(f) in str(e)  # and where it came from


@pytest.mark.parametrize("text, needle", [
    ("server:\n  port: 1\n bad: [\n", "line "),
    ("server: {port: 1}\nserver: {host: x}\n", "line 2: duplicate key 'server'"),
    ("- a\n- b\n", "must contain a mapping"),
])
def test_file_syntax_errors_name_the_file(env, tmp_path, text, needle):
    f = write(tmp_path / "c.yaml", text)
    e = error(path=f, env=env)
    assert str(e).startswith(f"config file {f}: ") and needle in str(e)


# ------------------------------------------------------------------------------------------ to_dict

def test_to_dict_redacts_secrets(env):
    cfg = load_config(env={**env, "CLINVK_API_KEYS": "k1,k2",
                           "CLINVK_BACKENDS__CLAUDE__ENV__ANTHROPIC_API_KEY": "sk-x",
                           "CLINVK_BACKENDS__CLAUDE__ENV__PLAIN": "v",
                           "CLINVK_SERVER__RATE_LIMIT_STORAGE_URI": "redis://:hunter2@h:6379/0"})
    d = cfg.to_dict()
    assert d["server"]["api_keys"] == ["***", "***"]
    assert d["backends"]["claude"]["env"] == {"ANTHROPIC_API_KEY": "***", "PLAIN": "v"}
    assert "hunter2" not in str(d) and "sk-x" not in str(d) and "k1" not in str(d)
    assert "k1" not in repr(cfg)
    raw = cfg.to_dict(redact=False)
    assert raw["server"]["api_keys"] == ["k1", "k2"]
    assert raw["backends"]["claude"]["env"]["ANTHROPIC_API_KEY"] == "sk-x"
    assert cfg.server.api_keys == ["k1", "k2"]  # redaction did not touch the config


def test_to_dict_without_keys_loads_back(env, tmp_path):
    cfg = load_config(env=env, overrides={"server": {"port": 1234}, "backends": {"codex": {"model": "m"}}})
    d = cfg.to_dict(redact=False)
    del d["server"]["api_keys"]
    again = load_config(write(tmp_path / "c.yaml", yaml.safe_dump(d)), env=env)
    assert again.to_dict() == cfg.to_dict()


# ---------------------------------------------------------------------------------- config set

def test_set_config_value_round_trip(env, tmp_path):
    f = write(tmp_path / "c.yaml", "# comment\ndefault_backend: codex\nserver:\n  host: 0.0.0.0\n")
    set_config_value(f, "server.port", "9000")
    set_config_value(f, "server.rate_limit_enabled", "true")
    set_config_value(f, "server.trusted_proxies", "10.0.0.1, 10.2.0.0/16")
    set_config_value(f, "backends.claude.env.FOO", "bar")
    set_config_value(f, "session.default_tags", "")
    set_config_value(f, "server.queue_timeout_secs", "1.5")
    data = yaml.safe_load(f.read_text())
    assert data["server"]["port"] == 9000 and data["server"]["rate_limit_enabled"] is True
    assert data["default_backend"] == "codex" and data["server"]["host"] == "0.0.0.0"  # preserved
    cfg = load_config(f, env=env)
    assert cfg.server.port == 9000 and cfg.server.rate_limit_enabled
    assert cfg.server.trusted_proxies == ["10.0.0.1", "10.2.0.0/16"]
    assert cfg.backend("claude").env == {"FOO": "bar"} and cfg.session.default_tags == []
    assert cfg.server.queue_timeout_secs == 1.5


def test_set_config_value_creates_file_and_keeps_strings_strings(tmp_path):
    f = tmp_path / "new" / "config.yaml"
    set_config_value(f, "backends.codex.model", "123")
    assert yaml.safe_load(f.read_text()) == {"backends": {"codex": {"model": "123"}}}


@pytest.mark.parametrize("key, value, needle", [
    ("server.port", "abc", "server.port: must be an integer between 1 and 65535 (got 'abc')"),
    ("server.prot", "1", "did you mean 'server.port'?"),
    ("server", "1", "server: is a section"),
    ("server.api_keys", "k", "never read from the config file"),
    ("output.format", "xml", "output.format: must be one of"),
    ("server.rate_limit_enabled", "true", "server.rate_limit_rps: must be an integer > 0"),
])
def test_set_config_value_rejects_and_leaves_file_alone(tmp_path, key, value, needle):
    f = write(tmp_path / "c.yaml", "server: {rate_limit_rps: 0}\n")
    before = f.read_text()
    with pytest.raises(ConfigError) as info:
        set_config_value(f, key, value)
    assert needle in str(info.value)
    assert f.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]  # no temp file left behind


def test_set_config_value_default_path(monkeypatch, home):
    monkeypatch.setenv("CLINVK_HOME", str(home))
    monkeypatch.delenv("CLINVK_CONFIG", raising=False)
    set_config_value(None, "default_backend", "gemini")
    assert yaml.safe_load((home / "config.yaml").read_text()) == {"default_backend": "gemini"}


# ------------------------------------------------------------------------------------- example

def test_example_config_loads_and_matches_defaults(env, tmp_path):
    cfg = load_config(EXAMPLE_CONFIG, env=env)
    assert cfg.to_dict() == load_config(env=env).to_dict()


def test_example_config_mentions_every_key():
    def leaves(d, prefix=()):
        for k, v in d.items():
            if isinstance(v, dict) and k != "env":
                yield from leaves(v, prefix + (k,))
            else:
                yield ".".join(prefix + (k,))
    example = set(leaves(yaml.safe_load(EXAMPLE_CONFIG.read_text())))
    expected = set(leaves(Config(home=Path("/h")).to_dict())) - {"server.api_keys"}
    assert example == expected


def test_example_config_shows_every_tenant_setting():
    """Tenants are a commented example (the file itself sets none); it names each TenantConfig field."""
    text = EXAMPLE_CONFIG.read_text()
    commented = yaml.safe_load("\n".join(line[1:] for line in text[text.index("#   tenants:"):].splitlines()
                                         if line.startswith("#   ")))
    assert set(commented["tenants"]["alice"]) == {f.name for f in dataclasses.fields(TenantConfig)} - {"name"}


@pytest.mark.parametrize("key", ["output.color", "parallel.aggregate_output", "unified_flags.max_tokens",
                                 "server.rate_limit_cleanup_secs"])
def test_keys_nothing_reads_are_unknown(env, tmp_path, key):
    """A key that would have no effect is an error, not a setting silently ignored."""
    section, name = key.split(".")
    f = write(tmp_path / "c.yaml", f"{section}:\n  {name}: 1\n")
    with pytest.raises(ConfigError, match=f"{key}: unknown key"):
        load_config(f, env=env)


def test_example_config_ships_in_the_package():
    from importlib.resources import files

    assert (files("clinvk.config") / "example.yaml").read_text() == EXAMPLE_CONFIG.read_text()
