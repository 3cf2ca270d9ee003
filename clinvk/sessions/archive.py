"""A session's local directories (its CLI home, its scratch workdir) packed into one compressed
archive, so that a store shared by several hosts can carry them from the host of one turn to the host
of the next.

The archive is a gzip'ed tar with one top-level directory per part (``home/``, ``workdir/``). What a
CLI rebuilds by itself (bundled skills it extracts, logs, locks, temp files) stays out, and so do
login files: each host's own template provides them (they must not be copied into the database).
Symbolic links are kept as links (a login file linked from the operator's home stays a link).

Each restored or saved directory holds :data:`MARKER`, the turn number its contents reflect, so a
host can tell whether its local copy is current without reading the archive.
"""

from __future__ import annotations

import fnmatch
import io
import os
import shutil
import tarfile
from pathlib import Path
from typing import Mapping

MARKER = ".clinvk-turn"
COMPRESSION_LEVEL = 6  # gzip: transcripts are text; 6 is within a few % of 9 at half the CPU

# Paths relative to a session home (clinvk.homes: HOME=<home>, the CLI's own directory inside it),
# as fnmatch patterns ("*" also matches "/"), left out of every archive, per backend.
# Caches: rebuilt by the CLI on its next run. Credentials: come from each host's template.
def _dirs(*names: str) -> tuple[str, ...]:
    return tuple(p for name in names for p in (name, name + "/*"))


EXCLUDED: dict[str, tuple[str, ...]] = {
    "claude": _dirs("tmp", ".claude/statsig", ".claude/shell-snapshots", ".claude/backups", ".claude/plugins/store")
    + (".claude/.credentials.json", ".claude/.last-cleanup"),
    "codex": _dirs("tmp", ".codex/skills/.system", ".codex/tmp", ".codex/thread-writer-locks", ".codex/shell_snapshots")
    # state_*.sqlite indexes the rollouts by absolute path (this host's home): codex rebuilds it from
    # the rollout files, which another host's copy would point away from.
    + (".codex/logs_*.sqlite*", ".codex/state_*.sqlite*", "*.lock", ".codex/auth.json",
       ".codex/gateway_oauth.json", ".codex/installation_id"),
    "gemini": _dirs("tmp") + (".gemini/oauth_creds.json", ".gemini/google_accounts.json", "*.lock",
                              ".gemini/installation_id"),
}
ALWAYS_EXCLUDED = (MARKER,)


def excluded(relative: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(relative, p) for p in patterns)


def pack(parts: Mapping[str, Path], exclude: tuple[str, ...] = ()) -> bytes:
    """The directories of ``parts`` (name → path; a missing path is skipped) as one .tar.gz."""
    patterns = ALWAYS_EXCLUDED + tuple(exclude)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=COMPRESSION_LEVEL) as tar:
        for name, root in parts.items():
            root = Path(root)
            if not root.is_dir():
                continue
            tar.add(root, arcname=name, recursive=False)
            for dirpath, dirnames, filenames in os.walk(root):
                rel_dir = os.path.relpath(dirpath, root)
                for entry in sorted(dirnames) + sorted(filenames):
                    relative = entry if rel_dir == "." else f"{rel_dir}/{entry}"
                    if excluded(relative, patterns):
                        if entry in dirnames:
                            dirnames.remove(entry)  # don't descend
                        continue
                    try:  # links are stored as links (tarfile does not dereference)
                        tar.add(os.path.join(dirpath, entry), arcname=f"{name}/{relative}", recursive=False)
                    except FileNotFoundError:  # a CLI's temp file vanished meanwhile
                        pass
                dirnames.sort()
    return buffer.getvalue()


def unpack(data: bytes, parts: Mapping[str, Path]) -> None:
    """Replace each directory of ``parts`` by its copy in the archive (parts absent from the archive
    are left alone). Each part is extracted next to its target, then swapped in."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        for name, root in parts.items():
            root = Path(root)
            mine = [m for m in members if m.name == name or m.name.startswith(name + "/")]
            if not mine:
                continue
            staging = root.with_name(root.name + ".restoring")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True, mode=0o700)
            # The "tar" filter refuses members that would land outside the staging directory while
            # keeping symlinks (a login file linked from the host's template home).
            tar.extractall(staging, members=mine, filter="tar")
            old = root.with_name(root.name + ".replaced")
            shutil.rmtree(old, ignore_errors=True)
            if root.exists():
                root.rename(old)
            (staging / name).rename(root)
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)


def local_turn(root: Path) -> int | None:
    """The turn number a local directory reflects, or None (no marker: never saved or restored here)."""
    try:
        return int((Path(root) / MARKER).read_text().strip())
    except (OSError, ValueError):
        return None


def mark(root: Path, turn: int) -> None:
    if Path(root).is_dir():
        (Path(root) / MARKER).write_text(f"{turn}\n")


def restore_if_stale(store, session_id: str, parts: Mapping[str, Path]) -> int | None:
    """Before a turn: when ``store`` carries local state and holds an archive newer than the local
    copy (or there is no local copy), replace the local directories by it. Returns the restored turn."""
    if not store.shares_local_state:
        return None
    stored = store.archive_turn(session_id)
    local = min((local_turn(p) or 0) for p in parts.values()) if parts else 0
    if stored is None or stored <= local:
        return None
    loaded = store.load_archive(session_id)
    if loaded is None:  # deleted meanwhile
        return None
    turn, data = loaded
    unpack(data, parts)
    for root in parts.values():
        mark(root, turn)
    return turn


def save(store, session_id: str, turn: int, parts: Mapping[str, Path], backend: str) -> int | None:
    """After a turn: store the session's directories as of ``turn``; returns the archive's size."""
    if not store.shares_local_state:
        return None
    for root in parts.values():
        mark(root, turn)
    data = pack(parts, EXCLUDED.get(backend, ()))
    store.save_archive(session_id, turn, data)
    return len(data)
