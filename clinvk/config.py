"""clinvk configuration: the model, its defaults, and the loader.

Layers, lowest to highest precedence::

    built-in defaults  <  YAML file  <  CLINVK_* environment  <  overrides (CLI flags, tests)

Every value is type-checked and range-checked when it is applied, and every error names the key path
(``server.port: ...``) plus where the bad value came from (file or environment variable). Unlike the
original Go implementation, nothing is silently ignored or silently replaced by a default: an unknown key
is an error with a "did you mean" suggestion, and a timeout <= 0 is an error rather than "300".
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import os
import re
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

__all__ = [
    "APPROVAL_MODES", "BACKEND_NAMES", "DEFAULT_BLOCKED_WORKDIR_PREFIXES", "EXAMPLE_CONFIG_YAML",
    "OUTPUT_FORMATS", "SANDBOX_MODES", "BackendConfig", "Config", "ConfigError", "OutputConfig",
    "ParallelConfig", "ServerConfig", "SessionConfig", "UnifiedFlags", "default_config_path",
    "load_config", "set_config_value",
]


class ConfigError(Exception):
    """A configuration problem. ``str(e)`` always starts with the key path or the file it concerns."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


BACKEND_NAMES = ("claude", "codex", "gemini")
APPROVAL_MODES = ("default", "auto", "none", "always")
SANDBOX_MODES = ("default", "read-only", "workspace", "full")
OUTPUT_FORMATS = ("default", "text", "json", "stream-json")
# Used when server.blocked_workdir_prefixes is empty (as in the original, a non-empty list replaces them).
DEFAULT_BLOCKED_WORKDIR_PREFIXES = (
    "/etc", "/var/run", "/var/lock", "/root", "/sys", "/proc", "/dev", "/usr/bin", "/usr/sbin",
    "/bin", "/sbin", "/boot", "/lib", "/lib64", "/usr/lib", "/usr/lib64",
)


# --------------------------------------------------------------------------------------------- model

@dataclass
class BackendConfig:
    name: str
    command: str = ""  # executable name or path; "" -> the backend name, resolved on PATH
    model: str = ""
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the CLI process
    enabled: bool = True
    extra_flags: list[str] = field(default_factory=list)  # operator's flags: trusted, not allowlisted
    approval_mode: str = ""  # "" = use unified_flags
    sandbox_mode: str = ""
    system_prompt: str = ""
    allowed_tools: str = ""
    allow_dangerous_flags: bool = False  # lets requests use approval_mode none / sandbox_mode full


@dataclass
class UnifiedFlags:
    approval_mode: str = "default"
    sandbox_mode: str = "default"
    verbose: bool = False
    dry_run: bool = False
    max_turns: int = 0
    max_tokens: int = 0
    command_timeout_secs: int = 0  # 0 = no timeout (CLI prompt/resume)


@dataclass
class SessionConfig:
    auto_resume: bool = False
    retention_days: int = 30  # 0 = keep forever
    default_tags: list[str] = field(default_factory=list)
    store_token_usage: bool = True


@dataclass
class OutputConfig:
    format: str = "json"
    show_tokens: bool = False
    show_timing: bool = False
    color: bool = True


@dataclass
class ParallelConfig:
    max_workers: int = 3
    fail_fast: bool = False
    aggregate_output: bool = True
    max_tasks: int = 32


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 64
    request_timeout_secs: int = 300
    read_timeout_secs: int = 30
    write_timeout_secs: int = 300
    idle_timeout_secs: int = 120
    keepalive_interval_secs: float = 15.0  # NDJSON/SSE keep-alive while the CLI is silent
    # Never read from the file (secrets don't belong in a world-readable YAML): CLINVK_API_KEYS or code.
    api_keys: list[str] = field(default_factory=list, repr=False)
    api_keys_gopass_path: str = ""
    rate_limit_enabled: bool = False
    rate_limit_rps: int = 10
    rate_limit_burst: int = 20
    rate_limit_storage_uri: str = "memory://"
    # Accepted so the original's config files load; flask-limiter's storage expires counters itself.
    rate_limit_cleanup_secs: int = 180
    trusted_proxies: list[str] = field(default_factory=list)  # IPs or CIDRs
    max_request_body_bytes: int = 10485760  # 0 = no limit
    cors_allowed_origins: list[str] = field(
        default_factory=lambda: ["http://localhost:*", "http://127.0.0.1:*"])
    cors_allow_credentials: bool = False
    cors_max_age: int = 300
    allowed_workdir_prefixes: list[str] = field(default_factory=list)
    blocked_workdir_prefixes: list[str] = field(
        default_factory=lambda: list(DEFAULT_BLOCKED_WORKDIR_PREFIXES))
    metrics_enabled: bool = False
    max_concurrent_runs: int = 16
    max_queued_runs: int = 64
    queue_timeout_secs: float = 30.0


def _default_home(env: Mapping[str, str]) -> Path:
    home = env.get("CLINVK_HOME")
    return Path(home).expanduser() if home else Path.home() / ".clinvk"


@dataclass
class Config:
    home: Path = field(default_factory=lambda: _default_home(os.environ))
    config_path: Path | None = None  # the file actually loaded
    default_backend: str = "claude"
    unified_flags: UnifiedFlags = field(default_factory=UnifiedFlags)
    backends: dict[str, BackendConfig] = field(default_factory=dict)
    session: SessionConfig = field(default_factory=SessionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    def __post_init__(self) -> None:
        # Callers can rely on all three backends being present.
        for name in BACKEND_NAMES:
            self.backends.setdefault(name, BackendConfig(name=name))

    def backend(self, name: str) -> BackendConfig:
        try:
            return self.backends[name]
        except KeyError:
            raise ConfigError(f"backends.{name}: unknown backend; expected one of "
                              f"{', '.join(BACKEND_NAMES)}", key=f"backends.{name}") from None

    @property
    def sessions_db(self) -> Path:
        return self.home / "sessions.db"

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """Plain data for ``clinvk config show`` (home/config_path are left to the caller)."""
        d: dict[str, Any] = {"default_backend": self.default_backend,
                             "unified_flags": dataclasses.asdict(self.unified_flags), "backends": {}}
        for name, b in self.backends.items():
            d["backends"][name] = {k: v for k, v in dataclasses.asdict(b).items() if k != "name"}
        for section in ("session", "output", "parallel", "server"):
            d[section] = dataclasses.asdict(getattr(self, section))
        if redact:
            d["server"]["api_keys"] = ["***" for _ in self.server.api_keys]
            d["server"]["rate_limit_storage_uri"] = re.sub(
                r"(://[^/@]*?:)[^/@]+@", r"\1***@", self.server.rate_limit_storage_uri)
            for b in d["backends"].values():  # e.g. backends.claude.env.ANTHROPIC_API_KEY
                b["env"] = {k: ("***" if _SECRET_NAME.search(k) else v) for k, v in b["env"].items()}
        return d


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.I)


# ------------------------------------------------------------------------------------------- schema

_SECTION = "<section>"  # marker for a node that holds keys rather than a value
_SECTIONS = {"unified_flags": UnifiedFlags, "session": SessionConfig, "output": OutputConfig,
             "parallel": ParallelConfig, "server": ServerConfig}


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    # A backend's name is its key under `backends`, so it is not a settable field.
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "name"}


def _children(path: tuple[str, ...]) -> dict[str, Any]:
    """The keys allowed under `path`, mapped to their type (or _SECTION)."""
    if not path:
        return {"default_backend": str, "backends": _SECTION, **{s: _SECTION for s in _SECTIONS}}
    if path == ("backends",):
        return {n: _SECTION for n in BACKEND_NAMES}
    if len(path) == 2 and path[0] == "backends":
        return _fields(BackendConfig)
    if len(path) == 1 and path[0] in _SECTIONS:
        return _fields(_SECTIONS[path[0]])
    return {}


@functools.cache
def _leaf_paths() -> tuple[tuple[str, ...], ...]:
    out, todo = [], [()]
    while todo:
        path = todo.pop()
        for k, kind in _children(path).items():
            (todo if kind is _SECTION else out).append(path + (k,))
    return tuple(sorted(out))


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


@dataclass(frozen=True)
class _Src:
    """Where a value came from, so errors can point at the file or the environment variable."""
    kind: str  # "file" | "env" | "override"
    label: str = ""

    def where(self) -> str:
        if self.kind == "file":
            return f" (in config file {self.label})"
        if self.kind == "env":
            return f" (from environment variable {self.label})"
        return ""


def _fail(key: str, msg: str, src: _Src) -> typing.NoReturn:
    raise ConfigError(f"{key}: {msg}{src.where()}", key=key)


def _unknown(prefix: tuple[str, ...], part: str, src: _Src) -> typing.NoReturn:
    valid = list(_children(prefix))
    close = difflib.get_close_matches(part, valid, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {_dotted(prefix + (close[0],))!r}?"
    else:  # the right key in the wrong section, e.g. a top-level `port:`
        elsewhere = [p for p in _leaf_paths() if p[-1] == part.lower()]
        hint = (f"did you mean {_dotted(elsewhere[0])!r}?" if elsewhere
                else f"valid keys here: {', '.join(valid)}")
    _fail(_dotted(prefix + (part,)), f"unknown key ({hint})", src)


def _resolve(path: tuple[str, ...], src: _Src) -> tuple[Any, tuple[str, ...], str | None]:
    """Check `path` against the schema: (type or _SECTION, path of the field, dict entry or None)."""
    for i, part in enumerate(path):
        kids = _children(path[:i])
        if part not in kids:
            _unknown(path[:i], part, src)
        kind = kids[part]
        if kind is _SECTION:
            continue
        rest = path[i + 1:]
        if not rest:
            return kind, path, None
        if typing.get_origin(kind) is dict and len(rest) == 1:  # backends.claude.env.FOO
            return str, path[:i + 1], rest[0]
        _fail(_dotted(path[:i + 1]), "is a single value, it has no sub-keys", src)
    return _SECTION, path, None


# -------------------------------------------------------------------------------- values and rules

@dataclass(frozen=True)
class _Rule:
    desc: str  # completes "must be ..."
    ok: Callable[[Any], bool]
    note: str = ""


def _between(lo: int, hi: int) -> _Rule:
    return _Rule(f"an integer between {lo} and {hi}", lambda v: lo <= v <= hi)


def _at_least(lo: int, what: str = "an integer") -> _Rule:
    return _Rule(f"{what} >= {lo}", lambda v: v >= lo)


def _positive(what: str = "an integer", note: str = "") -> _Rule:
    return _Rule(f"{what} > 0", lambda v: v > 0, note)


def _one_of(options: tuple[str, ...]) -> _Rule:
    return _Rule("one of " + ", ".join(map(repr, options)), lambda v: v in options)


def _is_network(v: str) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
        return True
    except ValueError:
        return False


# The original silently replaced timeouts <= 0 by their defaults; tell users of old files what to do.
_TIMEOUT_NOTE = ("; unlike the original clinvk, a value <= 0 does not mean the default: "
                 "remove the key to use the default ({})")
_ABSOLUTE = _Rule("an absolute path", lambda v: v.startswith("/"))

# Keyed by dotted path; "*" stands for any backend name.
_RULES: dict[str, _Rule] = {
    "default_backend": _one_of(BACKEND_NAMES),
    "unified_flags.approval_mode": _one_of(APPROVAL_MODES),
    "unified_flags.sandbox_mode": _one_of(SANDBOX_MODES),
    "unified_flags.max_turns": _at_least(0),
    "unified_flags.max_tokens": _at_least(0),
    "unified_flags.command_timeout_secs": _at_least(0),
    "backends.*.approval_mode": _one_of(("",) + APPROVAL_MODES),
    "backends.*.sandbox_mode": _one_of(("",) + SANDBOX_MODES),
    "session.retention_days": _at_least(0),
    "output.format": _one_of(OUTPUT_FORMATS),
    "parallel.max_workers": _at_least(1),
    "parallel.max_tasks": _at_least(1),
    "server.host": _Rule("a host name or IP address", lambda v: bool(re.fullmatch(r"[\w.:\[\]-]+", v))),
    "server.port": _between(1, 65535),
    "server.workers": _at_least(1),
    "server.threads": _at_least(1),
    **{f"server.{k}_timeout_secs": _positive(
        note=_TIMEOUT_NOTE.format(getattr(ServerConfig, f"{k}_timeout_secs")))
       for k in ("request", "read", "write", "idle")},
    "server.keepalive_interval_secs": _positive("a number"),
    "server.api_keys_gopass_path": _Rule("a gopass path of letters, digits and / _ . -",
                                         lambda v: v == "" or bool(re.fullmatch(r"[a-zA-Z0-9/_.\-]+", v))),
    "server.rate_limit_rps": _at_least(0),  # > 0 when enabled: checked once all layers are applied
    "server.rate_limit_burst": _at_least(1),
    "server.rate_limit_storage_uri": _Rule("a storage URI such as 'memory://' or 'redis://host:6379'",
                                           lambda v: "://" in v),
    "server.rate_limit_cleanup_secs": _at_least(1),
    "server.max_request_body_bytes": _at_least(0),
    "server.cors_max_age": _at_least(0),
    "server.max_concurrent_runs": _at_least(1),
    "server.max_queued_runs": _at_least(0),
    "server.queue_timeout_secs": _at_least(0, "a number"),
}
# Checked for each element of a list; the error names the index (server.trusted_proxies[1]).
_ITEM_RULES: dict[str, _Rule] = {
    "server.trusted_proxies": _Rule("an IP address or CIDR network", _is_network),
    "server.allowed_workdir_prefixes": _ABSOLUTE,
    "server.blocked_workdir_prefixes": _ABSOLUTE,
}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _type_desc(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return "a list of strings"
    if typing.get_origin(hint) is dict:
        return "a mapping of names to strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]


class _BadValue(Exception):
    pass


def _coerce(value: Any, hint: Any, from_string: bool) -> Any:
    """Convert `value` to `hint` strictly; strings are parsed only when they came from env/CLI text."""
    text = value.strip() if from_string and isinstance(value, str) else None
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if text is not None and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            return float(text)
    elif hint is str:
        if isinstance(value, str):
            return value if text is None else text
    elif origin is list:
        if text is not None:  # "a, b,,c" -> ["a", "b", "c"]
            return [p.strip() for p in text.split(",") if p.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
    elif origin is dict:
        if text is not None:  # "A=1,B=2"
            pairs = [p.partition("=") for p in text.split(",") if p.strip()]
            if all(sep and k.strip() for k, sep, _ in pairs):
                return {k.strip(): v.strip() for k, _, v in pairs}
        elif isinstance(value, Mapping) and all(
                isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value.values()):
            return {str(k): str(v) for k, v in value.items()}  # YAML `DEBUG: 1` means "1"
    raise _BadValue


def _rule_key(path: tuple[str, ...]) -> str:
    return _dotted(("backends", "*") + path[2:] if path[0] == "backends" else path)


def _set(cfg: Config, path: tuple[str, ...], value: Any, src: _Src, *, from_string: bool,
         sources: dict[str, _Src] | None = None) -> None:
    """Validate `value` for the key at `path` and store it in `cfg` (noting its source in `sources`)."""
    hint, fpath, entry = _resolve(path, src)
    key = _dotted(fpath)
    if hint is _SECTION:
        _fail(key, "is a section; set one of its keys", src)
    if fpath == ("server", "api_keys") and src.kind == "file":
        _fail(key, "API keys are never read from the config file; "
                   "set CLINVK_API_KEYS or server.api_keys_gopass_path", src)
    rule = _RULES.get(_rule_key(fpath))
    try:
        coerced = _coerce(value, hint, from_string)
    except _BadValue:
        coerced = _BadValue  # fail outside the except block: no chained traceback for users
    if coerced is _BadValue:
        _fail(key if entry is None else f"{key}.{entry}",
              f"must be {rule.desc if rule else _type_desc(hint)} (got {value!r})", src)
    if rule and not rule.ok(coerced):
        _fail(key, f"must be {rule.desc} (got {value!r}){rule.note}", src)
    item_rule = _ITEM_RULES.get(key)
    for i, item in enumerate(coerced if item_rule else ()):
        if not item_rule.ok(item):
            _fail(f"{key}[{i}]", f"must be {item_rule.desc} (got {item!r})", src)

    obj: Any = cfg.backends[fpath[1]] if fpath[0] == "backends" else (
        getattr(cfg, fpath[0]) if len(fpath) == 2 else cfg)
    if sources is not None:
        sources[key] = src
    if entry is None:
        setattr(obj, fpath[-1], coerced)
    else:
        getattr(obj, fpath[-1])[entry] = coerced


def _apply_tree(cfg: Config, data: Any, prefix: tuple[str, ...], src: _Src, sources: dict[str, _Src],
                *, dotted_keys: bool = False) -> None:
    """Apply a nested mapping (file contents or overrides). A null leaf or section means "not set"."""
    if data is None:
        return
    if not isinstance(data, Mapping):
        _fail(_dotted(prefix), f"must be a mapping of keys (got {type(data).__name__})", src)
    for raw_key, value in data.items():
        key = str(raw_key)
        path = prefix + (tuple(key.split(".")) if dotted_keys else (key,))
        hint = _resolve(path, src)[0]
        if hint is _SECTION:
            _apply_tree(cfg, value, path, src, sources, dotted_keys=dotted_keys)
        elif value is not None:
            _set(cfg, path, value, src, from_string=False, sources=sources)


# ---------------------------------------------------------------------------------- environment

_NAMED_ENV = {"HOME", "CONFIG", "BACKEND", "DEFAULT_BACKEND", "CLAUDE_MODEL", "CODEX_MODEL",
              "GEMINI_MODEL", "API_KEYS", "API_KEYS_GOPASS_PATH"}


def _apply_env(cfg: Config, env: Mapping[str, str], sources: dict[str, _Src]) -> None:
    top = list(_children(()))
    for var in sorted(env):  # sorted: deterministic error when several are wrong
        if not var.startswith("CLINVK_"):
            continue
        rest = var[len("CLINVK_"):]
        if "__" in rest:  # CLINVK_SERVER__PORT, CLINVK_BACKENDS__CLAUDE__ENV__FOO (entry keeps its case)
            parts = rest.split("__")
            path = tuple(p.lower() for p in parts[:3]) + tuple(parts[3:])
            if path[0] not in top:
                close = difflib.get_close_matches(path[0], top, n=1, cutoff=0.75)
                if close:  # a typo of a section, not someone else's variable
                    raise ConfigError(f"{path[0]}: unknown config section in environment variable "
                                      f"{var} (did you mean CLINVK_{close[0].upper()}__...?)", key=path[0])
                continue  # e.g. CLINVK_TEST__X: not ours
            _set(cfg, path, env[var], _Src("env", var), from_string=True, sources=sources)
        elif rest not in _NAMED_ENV:
            # CLINVK_SERVER_PORT (one underscore) looks meant for us but would do nothing: say so.
            low = rest.lower()
            for p in _leaf_paths():
                if low == "_".join(p):
                    want = "CLINVK_" + "__".join(p).upper()
                    raise ConfigError(f"{_dotted(p)}: environment variable {var} is not read; "
                                      f"use {want} (double underscore between levels)", key=_dotted(p))

    def named(var: str, path: tuple[str, ...]) -> None:
        value = env.get(var, "").strip()
        if value:  # empty means unset: an exported-but-empty variable must not clear the file's value
            _set(cfg, path, value, _Src("env", var), from_string=True, sources=sources)

    named("CLINVK_BACKEND", ("default_backend",))
    named("CLINVK_DEFAULT_BACKEND", ("default_backend",))  # as in the original, this one wins
    for name in BACKEND_NAMES:
        named(f"CLINVK_{name.upper()}_MODEL", ("backends", name, "model"))
    named("CLINVK_API_KEYS_GOPASS_PATH", ("server", "api_keys_gopass_path"))
    keys = [k.strip() for k in env.get("CLINVK_API_KEYS", "").split(",") if k.strip()]
    if keys:
        cfg.server.api_keys = keys


# -------------------------------------------------------------------------------------- loading

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: a second `server:` block must not silently win."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, typing.Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                    key_node.start_mark)
        if isinstance(key, typing.Hashable):
            seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path}: cannot be read: {e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"config file {path}: {where}{e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    if data is None:  # empty or all-comments file
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must contain a mapping of keys "
                          f"(got {type(data).__name__})")
    return data


def _finish(cfg: Config, sources: dict[str, _Src]) -> Config:
    """Checks that involve several keys, once every layer is applied."""
    s = cfg.server
    if s.rate_limit_enabled and s.rate_limit_rps <= 0:
        _fail("server.rate_limit_rps", f"must be an integer > 0 when server.rate_limit_enabled is true "
              f"(got {s.rate_limit_rps})", sources.get("server.rate_limit_rps", _Src("default")))
    if not s.blocked_workdir_prefixes:  # as in the original: empty means "the defaults", never "none"
        s.blocked_workdir_prefixes = list(DEFAULT_BLOCKED_WORKDIR_PREFIXES)
    return cfg


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """CLINVK_CONFIG if set, else <home>/config.yaml."""
    explicit = env.get("CLINVK_CONFIG")
    return Path(explicit).expanduser() if explicit else _default_home(env) / "config.yaml"


def load_config(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the Config: defaults < YAML file < env < overrides.

    An explicit `path` (or CLINVK_CONFIG) must exist; the default ~/.clinvk/config.yaml may be missing.
    `overrides` is a nested mapping ({"server": {"port": 9000}}; dotted keys also work); None leaves
    mean "not given", so CLI flags can be passed through unconditionally.
    """
    env = os.environ if env is None else env
    cfg = Config(home=_default_home(env))
    if path is not None or env.get("CLINVK_CONFIG"):
        file: Path | None = Path(path).expanduser() if path is not None else default_config_path(env)
    else:
        file = next((p for p in (cfg.home / "config.yaml", cfg.home / "config.yml") if p.exists()), None)
    sources: dict[str, _Src] = {}  # key -> where its value came from, for cross-key errors
    if file is not None:
        _apply_tree(cfg, _read_yaml(file), (), _Src("file", str(file)), sources)
        cfg.config_path = file
    _apply_env(cfg, env, sources)
    if overrides:
        _apply_tree(cfg, overrides, (), _Src("override"), sources, dotted_keys=True)
    return _finish(cfg, sources)


def set_config_value(path: str | os.PathLike[str] | None, dotted_key: str, raw_value: str) -> None:
    """`clinvk config set KEY VALUE`: parse VALUE for KEY's type, validate the result, write the file.

    Other keys are preserved (PyYAML does not keep comments). The file is replaced atomically and
    only if the whole resulting file is valid.
    """
    file = Path(path).expanduser() if path is not None else default_config_path()
    data = _read_yaml(file) if file.exists() else {}
    keypath = tuple(dotted_key.strip().split("."))
    src = _Src("file", str(file))
    # Check the value alone first, so the error is about it rather than about the whole file.
    _set(Config(home=file.parent), keypath, raw_value, src, from_string=True)
    node = data
    for i, part in enumerate(keypath[:-1]):
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            _fail(_dotted(keypath[:i + 1]), "must be a mapping of keys in the existing file", src)
        node = node[part]
    node[keypath[-1]] = _coerce(raw_value, _resolve(keypath, src)[0], from_string=True)
    checked, sources = Config(home=file.parent), {}
    _apply_tree(checked, data, (), src, sources)
    _finish(checked, sources)

    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".yaml", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=False, default_flow_style=False, allow_unicode=True)
        if file.exists():
            os.chmod(tmp, file.stat().st_mode & 0o7777)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------- example

EXAMPLE_CONFIG_YAML = """\
# clinvk configuration: ~/.clinvk/config.yaml (or --config / CLINVK_CONFIG).
# Precedence: built-in defaults < this file < CLINVK_* environment < command-line flags.
# Any key can also come from the environment, levels joined by a double underscore:
#   CLINVK_SERVER__PORT=9000  CLINVK_BACKENDS__CLAUDE__COMMAND=/opt/bin/claude
# Every value below is the default.

default_backend: claude          # claude | codex | gemini   (env: CLINVK_BACKEND)

unified_flags:
  approval_mode: default         # default | auto | none | always
  sandbox_mode: default          # default | read-only | workspace | full
  verbose: false
  dry_run: false                 # print the command instead of running it (server too)
  max_turns: 0                   # 0 = the CLI's own default
  max_tokens: 0
  command_timeout_secs: 0        # CLI prompt/resume; 0 = no timeout

backends:
  claude:
    command: ""                  # "" = `claude` found on PATH
    model: ""                    # env: CLINVK_CLAUDE_MODEL
    env: {}                      # extra environment, e.g. {ANTHROPIC_BASE_URL: "http://proxy:8080"}
    enabled: true
    extra_flags: []              # appended to every run; trusted, not allowlisted
    approval_mode: ""            # "" = unified_flags.approval_mode
    sandbox_mode: ""
    system_prompt: ""
    allowed_tools: ""            # e.g. "Read,Grep"
    allow_dangerous_flags: false # let requests use approval_mode none / sandbox_mode full
  codex:
    command: ""
    model: ""                    # env: CLINVK_CODEX_MODEL
    env: {}
    enabled: true
    extra_flags: []
    approval_mode: ""
    sandbox_mode: ""
    system_prompt: ""
    allowed_tools: ""
    allow_dangerous_flags: false
  gemini:
    command: ""
    model: ""                    # env: CLINVK_GEMINI_MODEL
    env: {}
    enabled: true
    extra_flags: []
    approval_mode: ""
    sandbox_mode: ""
    system_prompt: ""
    allowed_tools: ""
    allow_dangerous_flags: false

session:
  auto_resume: false             # CLI prompt continues the last session
  retention_days: 30             # 0 = keep forever
  default_tags: []
  store_token_usage: true

output:
  format: json                   # default | text | json | stream-json
  show_tokens: false
  show_timing: false
  color: true

parallel:
  max_workers: 3
  fail_fast: false
  aggregate_output: true
  max_tasks: 32                  # most tasks accepted in one parallel request

server:
  host: "127.0.0.1"              # 0.0.0.0 to listen on all interfaces
  port: 8080
  workers: 1                     # gunicorn worker processes
  threads: 64                    # threads per worker (gthread)
  request_timeout_secs: 300      # a CLI run is killed after this
  read_timeout_secs: 30
  write_timeout_secs: 300
  idle_timeout_secs: 120
  keepalive_interval_secs: 15.0  # stream keep-alive while the CLI is silent
  # API keys are never read from this file: set CLINVK_API_KEYS=key1,key2 or use gopass.
  api_keys_gopass_path: ""       # e.g. "myproject/server/api-keys"
  rate_limit_enabled: false
  rate_limit_rps: 10
  rate_limit_burst: 20
  rate_limit_storage_uri: "memory://"   # "redis://localhost:6379" to share across workers/hosts
  rate_limit_cleanup_secs: 180   # accepted for compatibility; has no effect
  trusted_proxies: []            # IPs/CIDRs allowed to set X-Forwarded-For, e.g. ["10.0.0.0/8"]
  max_request_body_bytes: 10485760   # 0 = no limit
  cors_allowed_origins: ["http://localhost:*", "http://127.0.0.1:*"]
  cors_allow_credentials: false
  cors_max_age: 300
  allowed_workdir_prefixes: []   # if set, workdirs must be under one of these
  blocked_workdir_prefixes:      # [] = this default list
    [/etc, /var/run, /var/lock, /root, /sys, /proc, /dev, /usr/bin, /usr/sbin,
     /bin, /sbin, /boot, /lib, /lib64, /usr/lib, /usr/lib64]
  metrics_enabled: false         # expose /metrics
  max_concurrent_runs: 16        # CLI processes at once, per server
  max_queued_runs: 64            # requests waiting for a slot before 429/503
  queue_timeout_secs: 30.0
"""
