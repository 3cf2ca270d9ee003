"""API keys: from ``CLINVK_API_KEYS`` or from gopass, checked in constant time, never logged.

``CLINVK_API_KEYS`` (comma-separated) wins when it holds a key. Otherwise, when
``server.api_keys_gopass_path`` is set, the keys are the comma-separated password of that gopass
entry, read with ``gopass show --password <path>`` (5 s timeout). A gopass
failure at startup is an error that stops the server: silently running without keys would leave
an API meant to be protected open to anyone. The gopass keys are read again every 5 minutes so a
rotated key takes effect without a restart; a failed re-read keeps the keys in use and is logged.

Each key belongs to a tenant (:mod:`clinvk.tenants`): an entry written ``name:key`` names it, a bare
key's tenant is named after its digest (:func:`key_id`). The config file adds keys as
``tenants.<name>.key_sha256`` digests (``clinvk keys add``); they count whichever other source is used.

Only SHA-256 digests of the keys are kept. Every presented key is compared with every configured
one (:func:`hmac.compare_digest` on digests of equal length), so neither the position of the
matching key nor a common prefix shows in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time

from .config import Config
from .tenants import split_key_entry

log = logging.getLogger(__name__)

GOPASS_TIMEOUT_SECS = 5.0
REFRESH_SECS = 300.0
RETRY_SECS = 60.0


class ApiKeyError(RuntimeError):
    """The API keys could not be loaded; the message says why (and never contains a key)."""


def split_keys(text: str) -> list[str]:
    return [k for k in re.split(r"[,\s]+", text) if k]


def key_id(key: str) -> str:
    """A short, non-reversible name of a key for logs and rate-limit counters."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def load_from_gopass(path: str, *, timeout: float = GOPASS_TIMEOUT_SECS, env: dict[str, str] | None = None) -> list[str]:
    """The keys stored at ``path`` in gopass; :class:`ApiKeyError` if that fails in any way."""
    env = dict(os.environ if env is None else env)
    what = f"gopass show --password {path}"
    executable = shutil.which("gopass", path=env.get("PATH"))
    if executable is None:
        raise ApiKeyError(f"server.api_keys_gopass_path is {path!r} but the gopass command is not on PATH")
    try:
        proc = subprocess.Popen([executable, "show", "--password", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
    except OSError as exc:
        raise ApiKeyError(f"{what}: cannot start gopass: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # gopass may have started gpg and pinentry: end the whole group, never leave them behind.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        raise ApiKeyError(f"{what}: no answer within {timeout:g} s (is the store locked, waiting for a "
                          "passphrase?)") from None
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        reason = detail[-1][:300] if detail else "no message"
        raise ApiKeyError(f"{what} failed with exit code {proc.returncode}: {reason}")
    keys = split_keys(out.decode("utf-8", "replace"))
    if not keys:
        raise ApiKeyError(f"{what}: the entry holds no API keys (expected a comma-separated list)")
    return keys


def entry_digest(entry: str) -> tuple[bytes, str]:
    """(SHA-256 of the key, its tenant's name) for a ``name:key`` or bare key entry."""
    name, key = split_key_entry(entry)
    return hashlib.sha256(key.encode("utf-8")).digest(), name or key_id(key)


class ApiKeys:
    """The configured keys. Falsy when auth is off (no key configured)."""

    def __init__(self, keys: list[str] | None = None, gopass_path: str = "", *,
                 digests: dict[str, str] | None = None,
                 refresh_secs: float = REFRESH_SECS, timeout: float = GOPASS_TIMEOUT_SECS):
        """``digests``: tenant name → hex SHA-256 of its key, from the config file."""
        self.gopass_path = "" if keys else gopass_path
        self.refresh_secs = refresh_secs
        self.timeout = timeout
        self._file = [(bytes.fromhex(d), name) for name, d in (digests or {}).items() if d]
        self._digests: list[tuple[bytes, str]] = list(self._file)
        self._lock = threading.Lock()
        self._refreshing = False
        self._next_refresh = float("inf")
        if keys:
            self._set(keys)
        elif gopass_path:
            self._set(load_from_gopass(gopass_path, timeout=timeout))
            self._next_refresh = time.monotonic() + refresh_secs
            log.info("loaded %d API key(s) from gopass entry %s", len(self._digests) - len(self._file), gopass_path)

    @classmethod
    def from_config(cls, config: Config) -> "ApiKeys":
        return cls(list(config.server.api_keys), config.server.api_keys_gopass_path,
                   digests={name: t.key_sha256 for name, t in config.tenants.items() if t.key_sha256})

    @property
    def source(self) -> str:
        if not self._digests:
            return "none"
        if len(self._digests) == len(self._file):
            return "config file"
        return f"gopass:{self.gopass_path}" if self.gopass_path else "CLINVK_API_KEYS"

    def tenant_names(self) -> set[str]:
        """The names of the tenants that hold a key."""
        return {name for _, name in self._digests}

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def _set(self, keys: list[str]) -> None:
        self._digests = [entry_digest(k) for k in dict.fromkeys(keys)] + self._file

    def match(self, presented: str) -> str | None:
        """The tenant name of the key ``presented`` equals, or None. Constant time over all keys."""
        self._maybe_refresh()
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for known, ident in self._digests:  # no early exit: every key is compared
            if hmac.compare_digest(digest, known):
                found = ident
        return found

    def _maybe_refresh(self) -> None:
        if not self.gopass_path or time.monotonic() < self._next_refresh:
            return
        with self._lock:
            if self._refreshing or time.monotonic() < self._next_refresh:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh, name="clinvk-apikeys", daemon=True).start()

    def _refresh(self) -> None:
        try:
            keys = load_from_gopass(self.gopass_path, timeout=self.timeout)
        except ApiKeyError as exc:
            log.warning("re-reading the API keys failed, keeping the %d in use: %s", len(self._digests), exc)
            self._next_refresh = time.monotonic() + min(RETRY_SECS, self.refresh_secs)
        else:
            self._set(keys)
            self._next_refresh = time.monotonic() + self.refresh_secs
        finally:
            self._refreshing = False
