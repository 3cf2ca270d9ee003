"""One CLI home per session: each session's CLI state (transcripts, caches, its own config copy)
lives in ``<clinvk home>/homes/<session id>/``, which is the CLI's ``HOME`` and holds the directory
its home variable names (``CLAUDE_CONFIG_DIR=<home>/.claude``, ``CODEX_HOME=<home>/.codex``,
``GEMINI_CLI_HOME=<home>``, so gemini uses ``<home>/.gemini``). A session's home is made on its first
turn and reused on every continuation (a CLI resumes only from the home that holds its transcript);
it goes when the session is deleted, by ``DELETE``, ``clinvk sessions delete`` or retention. Ephemeral
runs get a throwaway home under ``<clinvk home>/tmp-homes/``, removed when the run ends (or, left
untouched, handed to the next ephemeral run: :mod:`clinvk.spare_dirs`).

The operator's own CLI home — what the backend's environment names (server environment or
``backends.<name>.env``: ``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``GEMINI_CLI_HOME``; else ``~/.claude``,
``~/.codex``, ``~/.gemini``) — is the template. A new home gets a copy of its configuration
(:data:`TEMPLATES` ``config``: codex ``config.toml`` with custom providers, gemini ``settings.json``,
claude ``settings.json`` and ``.claude.json`` ...), never its caches or transcripts. Login files
(``credentials``) follow what each CLI does when it refreshes a token:

- gemini rewrites ``oauth_creds.json`` in place, following a symlink: the session home gets a
  symlink to the operator's file (the sandbox binds that file read-write at its own path too);
- codex writes ``auth.json`` to a new file in the *target's* directory and renames it over the
  target: a symlink works without the sandbox; inside it the operator's directory is not writable,
  so there it is copied in before the run and copied back when the run changed it;
- claude writes ``.credentials.json`` to a new file next to the *link* and renames it over the link
  (a symlink would be replaced and the refreshed token lost): copied in before every run and copied
  back when the run changed it.

Copy-back takes a lock and replaces the operator's file atomically. Several sessions refreshing one
rotating refresh token at the same moment can still race (the CLIs race with themselves the same
way); API-key variables (``ANTHROPIC_API_KEY``, ``CODEX_API_KEY``/provider ``env_key``,
``GEMINI_API_KEY``) and ``CLAUDE_CODE_OAUTH_TOKEN`` need no file and pass through unchanged.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .spare_dirs import SPARES
from .spare_dirs import remove as remove_dir

log = logging.getLogger(__name__)

LINK, COPY, COPY_IN_SANDBOX = "link", "copy", "link, copy when sandboxed"
TMP_HOME_MAX_AGE_SECS = 86400  # a throwaway home this old belongs to no live run (a crash left it)


@dataclass(frozen=True)
class Template:
    """Where a backend keeps its state, relative to the session home, and what of it comes from the operator."""
    variable: str  # the CLI's home variable
    subdir: str  # the directory the variable names, relative to the session home ("" = the home itself)
    state_dir: str  # where the CLI's files are, relative to the session home
    config: tuple[str, ...]  # files and directories copied once, when the home is made
    credentials: dict[str, str]  # file -> LINK | COPY | COPY_IN_SANDBOX
    extra_env: tuple[str, ...] = ()  # more variables that must point into the home

    def operator_dir(self, env: dict[str, str]) -> Path:
        """The operator's state directory for this CLI, from the backend's environment."""
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        if self.variable == "GEMINI_CLI_HOME":
            return Path(env.get("GEMINI_CLI_HOME") or home) / ".gemini"
        return Path(env[self.variable]) if env.get(self.variable) else home / self.subdir


TEMPLATES = {
    "claude": Template("CLAUDE_CONFIG_DIR", ".claude", ".claude",
                       ("settings.json", "CLAUDE.md", ".claude.json", "agents", "commands", "skills",
                        "output-styles", "plugins"),
                       {".credentials.json": COPY}, extra_env=("CLAUDE_CODE_TMPDIR",)),
    "codex": Template("CODEX_HOME", ".codex", ".codex",
                      ("config.toml", "AGENTS.md", "AGENTS.override.md", "prompts", "rules", "skills"),
                      {"auth.json": COPY_IN_SANDBOX, "gateway_oauth.json": COPY_IN_SANDBOX}),
    "gemini": Template("GEMINI_CLI_HOME", "", ".gemini",
                       ("settings.json", "GEMINI.md", "commands", "extensions", "skills", "policies", "agents"),
                       {"oauth_creds.json": LINK, "google_accounts.json": LINK}),
}
# Never copied, even inside a copied directory: state the CLI rebuilds (codex extracts its bundled
# skills into skills/.system on first run; claude keeps plugin caches in plugins/store).
SKIPPED = {".system", "store", "cache"}


@dataclass
class CliHome:
    """A session's (or a throwaway) home for one backend, attached for one run."""
    path: Path
    backend: str
    throwaway: bool
    sandboxed: bool = False
    binds: list[str] = field(default_factory=list)  # operator files the sandbox must bind read-write
    _copied: list[tuple[Path, Path, str | None]] = field(default_factory=list)  # (operator, session, digest)
    made: list[str] = field(default_factory=list)  # a throwaway home's subdirectories (names), as made
    spare_kind: tuple = ()  # a throwaway home: the kind of spare directory it may become (clinvk.spare_dirs)

    @property
    def template(self) -> Template:
        return TEMPLATES[self.backend]

    @functools.cached_property
    def state_dir(self) -> Path:
        return self.path / self.template.state_dir

    def workdir(self) -> Path:
        """The directory a run without a workdir runs in when sandboxed (the same on every turn)."""
        path = self.path / "work"
        path.mkdir(mode=0o700, exist_ok=True)
        if self.throwaway and path.name not in self.made:
            self.made.append(path.name)
        return path

    def env(self) -> dict[str, str]:
        """The variables that put the CLI in this home (merged over the backend's environment)."""
        template, home = self.template, str(self.path)
        tmp = "/tmp" if self.sandboxed else f"{home}/tmp"  # the sandbox has a private /tmp
        env = {"HOME": home, "TMPDIR": tmp, template.variable: f"{home}/{template.subdir}" if template.subdir else home}
        for name in template.extra_env:
            env[name] = tmp
        return env

    def attach_credentials(self, operator: Path, present: "OperatorFiles") -> None:
        """Put the operator's login files into the home for this run (see the module docstring)."""
        for name, how in self.template.credentials.items():
            if present.kind(name) != FILE:
                continue
            source, target = operator / name, self.state_dir / name
            copy = how == COPY or (how == COPY_IN_SANDBOX and self.sandboxed)
            if copy:
                if target.is_symlink():
                    target.unlink()
                login = source.read_bytes()
                _atomic_write(login, target)
                self._copied.append((source, target, hashlib.sha256(login).hexdigest()))
            else:
                if not (target.is_symlink() and os.readlink(target) == str(source)):
                    _replace_with_link(target, source)
                if self.sandboxed:
                    self.binds.append(str(source))

    def release(self, locks: Path) -> None:
        """After the run: copy refreshed login files back to the operator; remove a throwaway home."""
        for source, target, before in self._copied:
            refreshed = _own_file_bytes(target)
            if refreshed and hashlib.sha256(refreshed).hexdigest() != before:
                try:
                    with _locked(locks / f"{self.backend}-credentials.lock"):
                        _atomic_write(refreshed, source)
                    log.info("%s refreshed its login: copied %s back to %s", self.backend, target.name, source)
                except OSError as exc:
                    log.warning("could not copy the refreshed %s back to %s: %s", target.name, source, exc)
        self._copied.clear()
        if self.throwaway:
            subdirs = tuple(self.made)
            if not SPARES.give_back(self.spare_kind, str(self.path), subdirs):  # the next run's, when untouched
                remove_dir(str(self.path), subdirs)


def _own_file_bytes(path: Path) -> bytes | None:
    """The content of ``path`` if it is a regular file itself, else None: a run that replaced its login
    file with a symlink must not have the link's target (the session database, another tenant's file)
    copied into the operator's login file and from there into every later run's home."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        return file.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None


def _atomic_write(data: bytes, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _replace_with_link(target: Path, source: Path) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    os.symlink(source, tmp)
    os.replace(tmp, target)


class _locked:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # closing drops the lock


def _copy_config(source: Path, target: Path, names: Iterable[str], present: "OperatorFiles") -> None:
    for name in names:
        kind = present.kind(name)
        if kind is None:
            continue
        src, dst = source / name, target / name
        try:
            if kind == DIR:
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True,
                                ignore=lambda _d, entries: [e for e in entries if e in SKIPPED])
            else:
                shutil.copy2(src, dst)
        except OSError as exc:  # an unreadable extra must not stop the run; the CLI says what it misses
            log.warning("could not copy %s into a session home: %s", src, exc)


FILE, DIR = "file", "dir"
# A directory listing is reused only when it was taken this long after the directory last changed:
# a change made after the listing then gives the directory a newer mtime, whatever the timestamp
# granularity of its file system.
LISTING_SETTLED_NS = 1_000_000_000


class OperatorFiles:
    """Which of the names a home is seeded with the operator's directory holds, and what each is."""

    def __init__(self, entries: dict[str, str | None], directory: Path):
        self.entries, self.directory = entries, directory

    def kind(self, name: str) -> str | None:
        """FILE, DIR or None (absent, or neither). A symlink ("link") is followed now: its target may
        have changed without the directory changing."""
        kind = self.entries.get(name)
        if kind != "link":
            return kind
        try:
            mode = os.stat(self.directory / name).st_mode
        except OSError:
            return None
        return DIR if stat.S_ISDIR(mode) else FILE if stat.S_ISREG(mode) else None


class _Listings:
    """The entries of the operator's directories, listed again only when a directory changed: a new
    home on every ephemeral run would otherwise probe each template name twice (~20 stat calls)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int, int], int, dict[str, str | None]]] = {}

    def of(self, directory: Path) -> OperatorFiles:
        try:
            st = os.stat(directory)
        except OSError:
            return OperatorFiles({}, directory)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        cached = self._cache.get(directory)
        if cached is not None and cached[0] == key and cached[1] - st.st_mtime_ns > LISTING_SETTLED_NS:
            return OperatorFiles(cached[2], directory)
        listed_at = time.time_ns()
        entries: dict[str, str | None] = {}
        try:
            with os.scandir(directory) as found:
                for entry in found:
                    try:
                        entries[entry.name] = "link" if entry.is_symlink() else DIR if entry.is_dir() else \
                            FILE if entry.is_file() else None
                    except OSError:
                        entries[entry.name] = None
        except OSError:
            return OperatorFiles({}, directory)
        self._cache[directory] = (key, listed_at, entries)
        return OperatorFiles(entries, directory)


class CliHomes:
    """The homes under one clinvk state directory."""

    def __init__(self, state_dir: Path):
        self.root = state_dir / "homes"
        self.tmp_root = state_dir / "tmp-homes"
        self.locks = state_dir / "run" / "locks"
        self._listings = _Listings()
        self._tmp_root_text = str(self.tmp_root)
        self._operators: dict[tuple, Path] = {}

    def path(self, session_id: str) -> Path:
        return self.root / session_id

    def open(self, backend: str, session_id: str | None, operator_env: dict[str, str], *,
             sandboxed: bool, legacy: bool = False) -> CliHome | None:
        """The home for a run: the session's (made and seeded on its first turn) or a throwaway one
        when ``session_id`` is None. ``legacy``: a session with turns from before per-session homes;
        without the sandbox it keeps running in the operator's home (None), where its transcript is."""
        if session_id is None:
            return self._throwaway(backend, operator_env, sandboxed)
        path = self.path(session_id)
        if legacy and not sandboxed and not path.exists():
            return None
        home = CliHome(path, backend, False, sandboxed)
        operator = self._operator_dir(backend, operator_env)
        present = self._listings.of(operator)
        if not home.state_dir.is_dir():
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.mkdir(mode=0o700, exist_ok=True)
            (path / "tmp").mkdir(mode=0o700, exist_ok=True)
            home.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._seed(home, operator, present)
        home.attach_credentials(operator, present)
        return home

    def _throwaway(self, backend: str, operator_env: dict[str, str], sandboxed: bool) -> CliHome:
        """A home under ``tmp-homes``: a spare one a run left untouched (clinvk.spare_dirs), else a new one."""
        kind = ("home", self._tmp_root_text, backend, sandboxed)
        spare = SPARES.take(kind)
        if spare is not None:
            path, subdirs = spare
            home = CliHome(Path(path), backend, True, sandboxed, made=list(subdirs), spare_kind=kind)
        else:
            home = CliHome(self.tmp_root / uuid.uuid4().hex, backend, True, sandboxed, spare_kind=kind)
            try:
                home.path.mkdir(mode=0o700)
            except FileNotFoundError:  # the first one (or someone removed tmp-homes)
                self.tmp_root.mkdir(parents=True, exist_ok=True, mode=0o700)
                home.path.mkdir(mode=0o700)
            for directory in (home.path / "tmp", home.state_dir):
                directory.mkdir(mode=0o700)
                home.made.append(directory.name)
        operator = self._operator_dir(backend, operator_env)
        present = self._listings.of(operator)
        self._seed(home, operator, present)
        home.attach_credentials(operator, present)
        return home

    def _operator_dir(self, backend: str, env: dict[str, str]) -> Path:
        """TEMPLATES[backend].operator_dir(env), remembered for the variables it depends on."""
        template = TEMPLATES[backend]
        key = (backend, env.get("HOME"), env.get(template.variable))
        found = self._operators.get(key)
        if found is None:
            found = self._operators[key] = template.operator_dir(env)
        return found

    def _seed(self, home: CliHome, operator: Path, present: OperatorFiles) -> None:
        """Copy the operator's configuration into a new home."""
        _copy_config(operator, home.state_dir, home.template.config, present)
        if home.backend == "claude" and present.kind(".claude.json") is None:
            # Without CLAUDE_CONFIG_DIR claude keeps .claude.json in HOME, not in ~/.claude.
            in_home = OperatorFiles({".claude.json": "link"}, operator.parent)  # "link": looked at now
            _copy_config(operator.parent, home.state_dir, (".claude.json",), in_home)

    def remove(self, session_id: str) -> None:
        """Delete a session's home (no error if it has none)."""
        shutil.rmtree(self.path(session_id), ignore_errors=True)

    def sweep(self, exists: Callable[[str], bool]) -> int:
        """Retention: delete the homes of sessions for which ``exists(id)`` is false and throwaway
        homes a crash left behind; returns how many homes were removed."""
        removed = 0
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if not exists(entry.name):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
        if self.tmp_root.is_dir():
            cutoff = time.time() - TMP_HOME_MAX_AGE_SECS
            for entry in self.tmp_root.iterdir():
                try:
                    old = entry.stat().st_mtime < cutoff
                except OSError:
                    continue
                if old:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
        return removed
