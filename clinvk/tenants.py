"""Tenants: who an API key belongs to, and what that owner may do.

A tenant is a name plus settings. Every API key names one: ``name:key`` in ``CLINVK_API_KEYS`` or
gopass, a ``tenants.<name>.key_sha256`` digest in the config file, or — for a bare key — the first 12
hex characters of its SHA-256 (:func:`clinvk.apikeys.key_id`). With no key at all there is one
tenant, :data:`LOCAL`, which is also who the command line runs as.

What a tenant owns and is limited by:

- sessions: each belongs to the tenant that created it (the store's ``owner``); an admin sees all;
- ``allowed_workdir_prefixes``: narrows the server's own list (both must allow a workdir);
- ``max_concurrent_runs``: its share of the server's run slots; 0 means half of them (at least 1)
  when several tenants exist, so one key can never take every slot, and all of them otherwise. A
  cap set in the config counts across all hosts when limits live in Redis (:mod:`clinvk.cluster_gate`);
  the default share is a share of one host's slots and counts per host;
- ``rate_limit_rps``/``rate_limit_burst``: its own request rate (0: the server's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .config import TENANT_NAME_PATTERN, Config, TenantConfig

LOCAL = "local"


@dataclass(frozen=True)
class Tenant:
    name: str
    admin: bool = False
    allowed_workdir_prefixes: tuple[str, ...] = ()
    max_concurrent_runs: int = 0  # the effective cap on one host, always > 0 (see Tenants.get)
    configured_max_runs: int = 0  # tenants.<name>.max_concurrent_runs as set (0: the default share)
    rate_limit_rps: int = 0  # the effective rate; 0 = not limited
    rate_limit_burst: int = 0

    @property
    def owner_filter(self) -> str | None:
        """The ``owner`` a session query is restricted to: None (everything) for an admin."""
        return None if self.admin else self.name


def is_tenant_name(name: str) -> bool:
    return bool(re.fullmatch(TENANT_NAME_PATTERN, name))


def split_key_entry(entry: str) -> tuple[str | None, str]:
    """``name:key`` → (name, key); a bare key (or one whose part before ``:`` is no tenant name) → (None, key)."""
    name, sep, key = entry.partition(":")
    if sep and key and is_tenant_name(name):
        return name, key
    return None, entry


def local_tenant(config: Config) -> Tenant:
    """The only tenant when no key is configured (the laptop, the command line): it sees everything."""
    return Tenant(LOCAL, admin=True, max_concurrent_runs=config.server.max_concurrent_runs,
                  rate_limit_rps=config.server.rate_limit_rps if config.server.rate_limit_enabled else 0,
                  rate_limit_burst=config.server.rate_limit_burst)


class Tenants:
    """The tenants of one server, resolved from the config's ``tenants`` section and the key names."""

    def __init__(self, config: Config, names: Iterable[str] = ()):
        self.config = config
        self.names = frozenset(names) | frozenset(n for n, t in config.tenants.items() if t.key_sha256)
        self._cache: dict[str | None, Tenant] = {}

    def __len__(self) -> int:
        return len(self.names)

    def get(self, name: str | None) -> Tenant:
        """The tenant of this name (settings from ``tenants.<name>`` or the defaults); :data:`LOCAL` for None."""
        if name is None:
            local = self._cache.get(None)
            if local is None:
                local = self._cache[None] = local_tenant(self.config)
            return local
        tenant = self._cache.get(name)
        if tenant is None:
            tenant = self._cache[name] = self._build(name, self.config.tenants.get(name) or TenantConfig(name))
        return tenant

    def _build(self, name: str, settings: TenantConfig) -> Tenant:
        server = self.config.server
        slots = server.max_concurrent_runs
        cap = settings.max_concurrent_runs or (max(1, slots // 2) if len(self) > 1 else slots)
        rps = settings.rate_limit_rps or (server.rate_limit_rps if server.rate_limit_enabled else 0)
        burst = settings.rate_limit_burst or server.rate_limit_burst
        return Tenant(name, admin=settings.admin, allowed_workdir_prefixes=tuple(settings.allowed_workdir_prefixes),
                      max_concurrent_runs=min(cap, slots), configured_max_runs=settings.max_concurrent_runs,
                      rate_limit_rps=rps, rate_limit_burst=burst)
