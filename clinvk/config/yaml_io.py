"""Reading and writing the YAML config file, and :func:`load_config`, which stacks every layer::

    built-in defaults  <  YAML file  <  CLINVK_* environment  <  overrides (CLI flags, tests)
"""

from __future__ import annotations

import os
import tempfile
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..private_dirs import make_private_dirs
from .coercion import Src, apply_tree, coerce, dotted, fail, resolve, set_value
from .env import apply_env
from .model import DEFAULT_BLOCKED_WORKDIR_PREFIXES, Config, ConfigError, default_home


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


def _finish(cfg: Config, sources: dict[str, Src]) -> Config:
    """Checks that involve several keys, once every layer is applied."""
    s = cfg.server
    if s.rate_limit_enabled and s.rate_limit_rps <= 0:
        fail("server.rate_limit_rps", f"must be an integer > 0 when server.rate_limit_enabled is true "
              f"(got {s.rate_limit_rps})", sources.get("server.rate_limit_rps", Src("default")))
    if not s.blocked_workdir_prefixes:  # empty means "the defaults", never "no protection"
        s.blocked_workdir_prefixes = list(DEFAULT_BLOCKED_WORKDIR_PREFIXES)
    return cfg


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """CLINVK_CONFIG if set, else <home>/config.yaml."""
    explicit = env.get("CLINVK_CONFIG")
    return Path(explicit).expanduser() if explicit else default_home(env) / "config.yaml"


def load_config(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the Config: defaults < YAML file < env < overrides.

    An explicit `path` (or CLINVK_CONFIG) must exist; the default ~/.clinvk/config.yaml may be missing.
    `overrides` is a nested mapping ({"server": {"port": 9000}}; dotted keys also work); None leaves
    mean "not given", so CLI flags can be passed through unconditionally.
    """
    env = os.environ if env is None else env
    cfg = Config(home=default_home(env))
    if path is not None or env.get("CLINVK_CONFIG"):
        file: Path | None = Path(path).expanduser() if path is not None else default_config_path(env)
    else:
        file = next((p for p in (cfg.home / "config.yaml", cfg.home / "config.yml") if p.exists()), None)
    sources: dict[str, Src] = {}  # key -> where its value came from, for cross-key errors
    if file is not None:
        apply_tree(cfg, _read_yaml(file), (), Src("file", str(file)), sources)
        cfg.config_path = file
    apply_env(cfg, env, sources)
    if overrides:
        apply_tree(cfg, overrides, (), Src("override"), sources, dotted_keys=True)
    return _finish(cfg, sources)


def set_config_value(path: str | os.PathLike[str] | None, dotted_key: str, raw_value: str) -> None:
    """`clinvk config set KEY VALUE`: parse VALUE for KEY's type, validate the result, write the file.

    Other keys are preserved (PyYAML does not keep comments). The file is replaced atomically and
    only if the whole resulting file is valid.
    """
    file = Path(path).expanduser() if path is not None else default_config_path()
    data = _read_yaml(file) if file.exists() else {}
    keypath = tuple(dotted_key.strip().split("."))
    src = Src("file", str(file))
    # Check the value alone first, so the error is about it rather than about the whole file.
    set_value(Config(home=file.parent), keypath, raw_value, src, from_string=True)
    node = data
    for i, part in enumerate(keypath[:-1]):
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            fail(dotted(keypath[:i + 1]), "must be a mapping of keys in the existing file", src)
        node = node[part]
    node[keypath[-1]] = coerce(raw_value, resolve(keypath, src)[0], from_string=True)
    _write_checked(file, data, src)


def unset_config_value(path: str | os.PathLike[str] | None, dotted_key: str) -> bool:
    """Remove KEY from the config file (and the sections it leaves empty); False when it was not set."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    data = _read_yaml(file) if file.exists() else {}
    keypath = tuple(dotted_key.strip().split("."))
    trail, node = [], data
    for part in keypath[:-1]:
        if not isinstance(node.get(part), dict):
            return False
        trail.append((node, part))
        node = node[part]
    if keypath[-1] not in node:
        return False
    del node[keypath[-1]]
    for parent, part in reversed(trail):  # drop `tenants: {alice: {}}` left behind
        if parent[part] == {}:
            del parent[part]
    _write_checked(file, data, Src("file", str(file)))
    return True


def _write_checked(file: Path, data: dict[str, Any], src: Src) -> None:
    """Replace ``file`` with ``data`` atomically, and only if the whole resulting file is valid."""
    checked, sources = Config(home=file.parent), {}
    apply_tree(checked, data, (), src, sources)
    _finish(checked, sources)

    make_private_dirs(file.parent)
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
