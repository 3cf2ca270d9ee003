"""The ``CLINVK_*`` environment layer: ``CLINVK_SECTION__KEY`` for any key, plus a few named variables."""

from __future__ import annotations

import difflib
from typing import Mapping

from .coercion import Src, children, dotted, leaf_paths, set_value
from .model import BACKEND_NAMES, Config, ConfigError


_NAMED_ENV = {"HOME", "CONFIG", "BACKEND", "DEFAULT_BACKEND", "CLAUDE_MODEL", "CODEX_MODEL",
              "GEMINI_MODEL", "API_KEYS", "API_KEYS_GOPASS_PATH"}


def apply_env(cfg: Config, env: Mapping[str, str], sources: dict[str, Src]) -> None:
    top = list(children(()))
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
            set_value(cfg, path, env[var], Src("env", var), from_string=True, sources=sources)
        elif rest not in _NAMED_ENV:
            # CLINVK_SERVER_PORT (one underscore) looks meant for us but would do nothing: say so.
            low = rest.lower()
            for p in leaf_paths():
                if low == "_".join(p):
                    want = "CLINVK_" + "__".join(p).upper()
                    raise ConfigError(f"{dotted(p)}: environment variable {var} is not read; "
                                      f"use {want} (double underscore between levels)", key=dotted(p))

    def named(var: str, path: tuple[str, ...]) -> None:
        value = env.get(var, "").strip()
        if value:  # empty means unset: an exported-but-empty variable must not clear the file's value
            set_value(cfg, path, value, Src("env", var), from_string=True, sources=sources)

    named("CLINVK_BACKEND", ("default_backend",))
    named("CLINVK_DEFAULT_BACKEND", ("default_backend",))  # the more specific name wins
    for name in BACKEND_NAMES:
        named(f"CLINVK_{name.upper()}_MODEL", ("backends", name, "model"))
    named("CLINVK_API_KEYS_GOPASS_PATH", ("server", "api_keys_gopass_path"))
    keys = [k.strip() for k in env.get("CLINVK_API_KEYS", "").split(",") if k.strip()]
    if keys:
        cfg.server.api_keys = keys
