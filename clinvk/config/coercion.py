"""The coercion engine: which keys exist, what type and range each takes, and applying a value to a
:class:`~clinvk.config.model.Config` with an error that names the key path and where the value came from.

Nothing is silently ignored or silently replaced by a default: an unknown key is an error with a
"did you mean" suggestion, and a timeout <= 0 is an error rather than "the default".
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..modelname import model_error
from .model import (APPROVAL_MODES, BACKEND_NAMES, OUTPUT_FORMATS, SANDBOX_CHOICES, SANDBOX_MODES,
                    TENANT_NAME_PATTERN, BackendConfig, Config, ConfigError, JobsConfig, OutputConfig,
                    ParallelConfig, RunConfig, ServerConfig, SessionConfig, TenantConfig, UnifiedFlags,
                    WarmPoolConfig)


_SECTION = "<section>"  # marker for a node that holds keys rather than a value
_SECTIONS = {"unified_flags": UnifiedFlags, "session": SessionConfig, "output": OutputConfig,
             "parallel": ParallelConfig, "server": ServerConfig, "run": RunConfig, "jobs": JobsConfig}
# Sections two levels deep: path -> dataclass (reached as attributes of Config along the path).
_SUBSECTIONS = {("run", "warm_pool"): WarmPoolConfig}
_TENANTS = "tenants"  # a section whose keys are names the operator chooses (tenant names)


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    # A backend's name is its key under `backends`, so it is not a settable field.
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "name"}


def children(path: tuple[str, ...]) -> dict[str, Any]:
    """The keys allowed under `path`, mapped to their type (or _SECTION)."""
    if not path:
        return {"default_backend": str, "backends": _SECTION, _TENANTS: _SECTION,
                **{s: _SECTION for s in _SECTIONS}}
    if path in _SUBSECTIONS:
        return _fields(_SUBSECTIONS[path])
    if path == ("backends",):
        return {n: _SECTION for n in BACKEND_NAMES}
    if len(path) == 2 and path[0] == "backends":
        return _fields(BackendConfig)
    if len(path) == 2 and path[0] == _TENANTS:
        return _fields(TenantConfig)
    if len(path) == 1 and path[0] in _SECTIONS:
        subsections = {sub[1]: _SECTION for sub in _SUBSECTIONS if sub[0] == path[0]}
        return {**_fields(_SECTIONS[path[0]]), **subsections}
    return {}


@functools.cache
def leaf_paths() -> tuple[tuple[str, ...], ...]:
    out, todo = [], [()]
    while todo:
        path = todo.pop()
        for k, kind in children(path).items():
            (todo if kind is _SECTION else out).append(path + (k,))
    return tuple(sorted(out))


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


@dataclass(frozen=True)
class Src:
    """Where a value came from, so errors can point at the file or the environment variable."""
    kind: str  # "file" | "env" | "override"
    label: str = ""

    def where(self) -> str:
        if self.kind == "file":
            return f" (in config file {self.label})"
        if self.kind == "env":
            return f" (from environment variable {self.label})"
        return ""


def fail(key: str, msg: str, src: Src) -> typing.NoReturn:
    raise ConfigError(f"{key}: {msg}{src.where()}", key=key)


def _unknown(prefix: tuple[str, ...], part: str, src: Src) -> typing.NoReturn:
    valid = list(children(prefix))
    close = difflib.get_close_matches(part, valid, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {dotted(prefix + (close[0],))!r}?"
    else:  # the right key in the wrong section, e.g. a top-level `port:`
        elsewhere = [p for p in leaf_paths() if p[-1] == part.lower()]
        hint = (f"did you mean {dotted(elsewhere[0])!r}?" if elsewhere
                else f"valid keys here: {', '.join(valid)}")
    fail(dotted(prefix + (part,)), f"unknown key ({hint})", src)


def resolve(path: tuple[str, ...], src: Src) -> tuple[Any, tuple[str, ...], str | None]:
    """Check `path` against the schema: (type or _SECTION, path of the field, dict entry or None)."""
    for i, part in enumerate(path):
        if path[:i] == (_TENANTS,):  # any name: a section of its own
            if not re.fullmatch(TENANT_NAME_PATTERN, part):
                fail(dotted(path[:i + 1]), "a tenant name must be 1-64 lowercase letters, digits, '.', '_' "
                                           "or '-', starting with a letter or digit", src)
            continue
        kids = children(path[:i])
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
        fail(dotted(path[:i + 1]), "is a single value, it has no sub-keys", src)
    return _SECTION, path, None


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


# Config files written for other clinvk versions may use 0 to mean "the default": say how to get it.
_TIMEOUT_NOTE = "; a value <= 0 does not mean the default: remove the key to use the default ({})"
_ABSOLUTE = _Rule("an absolute path", lambda v: v.startswith("/"))

# Keyed by dotted path; "*" stands for any backend name.
_RULES: dict[str, _Rule] = {
    "default_backend": _one_of(BACKEND_NAMES),
    "unified_flags.approval_mode": _one_of(APPROVAL_MODES),
    "unified_flags.sandbox_mode": _one_of(SANDBOX_MODES),
    "unified_flags.max_turns": _at_least(0),
    "unified_flags.command_timeout_secs": _at_least(0),
    "backends.*.approval_mode": _one_of(("",) + APPROVAL_MODES),
    "backends.*.model": _Rule("a string (a model name: no leading '-', whitespace or control characters)",
                              lambda v: model_error(v) is None),
    "backends.*.sandbox_mode": _one_of(("",) + SANDBOX_MODES),
    "session.retention_days": _at_least(0),
    "session.store": _Rule("'' (SQLite in the clinvk home), an absolute SQLite file path or a postgresql:// URI",
                           lambda v: v == "" or v.startswith(("/", "postgresql://", "postgres://"))),
    "session.store_pool_size": _at_least(1),
    "session.turn_lease_secs": _positive("a number"),
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
    "server.max_request_body_bytes": _at_least(0),
    "server.cors_max_age": _at_least(0),
    "server.max_concurrent_runs": _at_least(1),
    "server.max_queued_runs": _at_least(0),
    "server.queue_timeout_secs": _at_least(0, "a number"),
    "run.warm_pool.size": _at_least(1),
    "run.warm_pool.max_processes": _at_least(0),
    "run.warm_pool.max_memory_mb": _at_least(0),
    "run.warm_pool.idle_expiry_secs": _positive("a number"),
    "jobs.timeout_secs": _positive(),
    "jobs.max_active_per_tenant": _at_least(1),
    "jobs.heartbeat_secs": _positive("a number"),
    "server.shutdown_grace_secs": _at_least(0),
    "server.quota_lease_secs": _positive("a number"),
    "run.sandbox": _one_of(SANDBOX_CHOICES),
    "tenants.*.key_sha256": _Rule("a SHA-256 digest: 64 lowercase hex characters (clinvk keys add writes it)",
                                  lambda v: v == "" or bool(re.fullmatch(r"[0-9a-f]{64}", v))),
    "tenants.*.max_concurrent_runs": _at_least(0),
    "tenants.*.rate_limit_rps": _at_least(0),
    "tenants.*.rate_limit_burst": _at_least(0),
}
# Checked for each element of a list; the error names the index (server.trusted_proxies[1]).
_ITEM_RULES: dict[str, _Rule] = {
    "server.trusted_proxies": _Rule("an IP address or CIDR network", _is_network),
    "server.allowed_workdir_prefixes": _ABSOLUTE,
    "server.blocked_workdir_prefixes": _Rule("an absolute path or ~/path (a trailing * matches by name)",
                                             lambda v: v.startswith(("/", "~/"))),
    "backends.*.pass_env": _Rule("an environment variable name, or a prefix ending in * (MY_TOOL_*)",
                                 lambda v: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", v) is not None),
    "run.warm_pool.backends": _Rule("a backend with a long-lived mode that gives one-shot replies: "
                                    "'claude' or 'codex'", lambda v: v in ("claude", "codex")),
    "tenants.*.allowed_workdir_prefixes": _ABSOLUTE,
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


def coerce(value: Any, hint: Any, from_string: bool) -> Any:
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
    if path[0] in ("backends", _TENANTS) and len(path) > 2:
        return dotted((path[0], "*") + path[2:])
    return dotted(path)


def set_value(cfg: Config, path: tuple[str, ...], value: Any, src: Src, *, from_string: bool,
         sources: dict[str, Src] | None = None) -> None:
    """Validate `value` for the key at `path` and store it in `cfg` (noting its source in `sources`)."""
    hint, fpath, entry = resolve(path, src)
    key = dotted(fpath)
    if hint is _SECTION:
        fail(key, "is a section; set one of its keys", src)
    if fpath == ("server", "api_keys") and src.kind == "file":
        fail(key, "API keys are never read from the config file; "
                   "set CLINVK_API_KEYS or server.api_keys_gopass_path", src)
    rule = _RULES.get(_rule_key(fpath))
    try:
        coerced = coerce(value, hint, from_string)
    except _BadValue:
        coerced = _BadValue  # fail outside the except block: no chained traceback for users
    if coerced is _BadValue:
        fail(key if entry is None else f"{key}.{entry}",
              f"must be {rule.desc if rule else _type_desc(hint)} (got {value!r})", src)
    if rule and not rule.ok(coerced):
        fail(key, f"must be {rule.desc} (got {value!r}){rule.note}", src)
    item_rule = _ITEM_RULES.get(_rule_key(fpath))
    for i, item in enumerate(coerced if item_rule else ()):
        if not item_rule.ok(item):
            fail(f"{key}[{i}]", f"must be {item_rule.desc} (got {item!r})", src)

    if fpath[0] == "backends":
        obj: Any = cfg.backends[fpath[1]]
    elif fpath[0] == _TENANTS:
        obj = cfg.tenants.setdefault(fpath[1], TenantConfig(name=fpath[1]))
    else:
        obj = cfg
        for part in fpath[:-1]:  # run.warm_pool.size: two levels deep
            obj = getattr(obj, part)
    if sources is not None:
        sources[key] = src
    if entry is None:
        setattr(obj, fpath[-1], coerced)
    else:
        getattr(obj, fpath[-1])[entry] = coerced


def apply_tree(cfg: Config, data: Any, prefix: tuple[str, ...], src: Src, sources: dict[str, Src],
                *, dotted_keys: bool = False) -> None:
    """Apply a nested mapping (file contents or overrides). A null leaf or section means "not set"."""
    if data is None:
        return
    if not isinstance(data, Mapping):
        fail(dotted(prefix), f"must be a mapping of keys (got {type(data).__name__})", src)
    for raw_key, value in data.items():
        key = str(raw_key)
        path = prefix + (tuple(key.split(".")) if dotted_keys else (key,))
        hint = resolve(path, src)[0]
        if hint is _SECTION:
            apply_tree(cfg, value, path, src, sources, dotted_keys=dotted_keys)
        elif value is not None:
            set_value(cfg, path, value, src, from_string=False, sources=sources)
