"""Ending what a run leaves running outside its CLI's process group: the agent's own commands.

clinvk ends a run by killing its CLI's process group. The commands the agent runs through its shell
tool can be outside that group: claude, codex and gemini start their tool shells in sessions of their
own (measured with the pinned CLIs), and a command may daemonize itself (``setsid … &``, a dev
server). Inside the bubblewrap sandbox they die with its PID namespace; without it they would outlive
the run, and gemini's even outlive a SIGTERM of the CLI.

So every CLI process is started with ``RUN_BY_CLINVK=<tag>`` in its environment, a tag of its own,
which whatever it starts inherits. Once the run is over (its group ended), :func:`end` kills every
process that still carries the tag, with all that runs below it.

Where they are looked for: the gunicorn master is made a child subreaper (:func:`become_reaper`), so
what the CLIs of its workers leave behind is re-parented to it, not to init, and it reaps them (as
gunicorn does with any child). A worker then only reads the master's children: one small file when
nothing was left. Without such a master (``clinvk`` on the command line, an app in-process), every
process in /proc is looked at, about 10 µs each. The master ends a dead worker's leftovers
(:func:`end_worker`), and, as the tags name the server's run directory (:func:`set_scope`), a new
master those of a killed predecessor (:func:`end_scope`).

Not caught: a process that leaves the CLI's process tree *and* drops the variable from its environment
(``env -i``, ``sudo`` without ``env_keep``, a daemon that overwrites its environment block to show a
title), or one whose environment clinvk may not read (another user's, after a setuid program).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import logging
import os
import secrets
import signal
import time

log = logging.getLogger(__name__)

VARIABLE = "RUN_BY_CLINVK"  # not CLINVK_*: no variable of that prefix reaches a CLI (cli_env)
PR_SET_CHILD_SUBREAPER = 36
# After a killed CLI's leader is reaped, the rest of its group is still dying: what they started is
# re-parented only once they are gone. Wait that long at most for it.
GROUP_GONE_SECS = 1.0
RETRY_SECS = 0.01
READ_SIZE = 16384
MAX_READ = 1 << 20  # an environment block larger than this is not searched further

# Keeps the tags of one server apart from any other's (a clinvk that itself runs under clinvk
# included): drawn per process, or named after the server's state (:func:`set_scope`), which its
# workers inherit and its next master finds again.
_NONCE = secrets.token_hex(4)
_counter = itertools.count(1)
_reaper: int | None = None  # the process that adopts our CLIs' orphans (a gunicorn master)


def new_tag() -> str:
    """A tag no other CLI process carries: ``<nonce>.<our pid>.<n>`` (a dead worker's leftovers are
    found by its pid, :func:`end_worker`)."""
    return f"{_NONCE}.{os.getpid()}.{next(_counter)}"


def set_scope(name: str) -> None:
    """Tag the runs of this process and of those it forks after ``name`` (a server's run directory):
    a later master of the same server finds what its predecessor's runs left (:func:`end_scope`)."""
    global _NONCE
    _NONCE = hashlib.sha256(name.encode()).hexdigest()[:8]


def end_scope(passes: int = 3) -> int:
    """Kill, anywhere in /proc, what the runs of this scope left: for a master that starts, what a
    killed predecessor's left."""
    return _end_everywhere(f"{VARIABLE}={_NONCE}.".encode(), passes)


def become_reaper() -> bool:
    """Make this process the child subreaper of everything it starts (Linux 3.4+), and the place
    where the processes it forks look for leftovers. True if it worked."""
    global _reaper
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper (%s): a run's leftovers are looked for in all of "
                    "/proc", exc)
        return False
    _reaper = os.getpid()
    return True


def end(tag: str, pgid: int) -> int:
    """Kill every process carrying ``tag`` (and what runs below it) once the group ``pgid`` of the
    run's CLI is gone; call it after the CLI was reaped and its group killed. Returns how many."""
    needle = f"{VARIABLE}={tag}\0".encode()
    deadline = time.monotonic() + GROUP_GONE_SECS
    signalled: set[int] = set()
    while True:
        killed = _kill_marked(needle, signalled)
        if not killed and not _group_exists(pgid):
            return len(signalled)
        if time.monotonic() >= deadline:
            return len(signalled)
        time.sleep(RETRY_SECS)


def end_worker(pid: int, passes: int = 3) -> int:
    """Kill every process left by the runs of the (dead) worker ``pid``, wherever it is in /proc.
    For the master, after the worker's groups were killed."""
    return _end_everywhere(f"{VARIABLE}={_NONCE}.{pid}.".encode(), passes)


def _end_everywhere(needle: bytes, passes: int) -> int:
    signalled: set[int] = set()
    for _ in range(passes):  # a second pass for what was forked while the first one killed
        if not _kill_marked(needle, signalled, everywhere=True):
            break
    return len(signalled)


def _kill_marked(needle: bytes, signalled: set[int], everywhere: bool = False) -> int:
    """One pass: SIGKILL each candidate whose environment holds ``needle``, with its descendants,
    unless it is in ``signalled`` (an earlier pass's, maybe still dying); adds them there."""
    killed = 0
    own_session = os.getsid(0)
    for pid in _candidates(everywhere):
        # A CLI starts in a session of its own and nothing below it can join ours: one system call
        # spares reading the environment of the server's own processes (the other workers).
        if pid in signalled or _session(pid) in (own_session, None) or not _carries(pid, needle):
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue  # gone meanwhile
        try:
            # The same process as the one read (the pidfd pins it), and its tree as it is now.
            if not _carries(pid, needle):
                continue
            tree = _descendants(pid)
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            continue
        finally:
            os.close(pidfd)
        signalled.add(pid)
        killed += 1
        for child in tree:
            if child in signalled:
                continue
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                continue
            signalled.add(child)
            killed += 1
    return killed


def _candidates(everywhere: bool) -> list[int]:
    """Where a run's leftovers can be: the reaper's children, or every process (not this one)."""
    me = os.getpid()
    if not everywhere and _reaper is not None and _reaper != me and os.getppid() == _reaper:
        # Orphans go to the reaper's first live thread, its main one (kernel find_new_reaper).
        children = _read(f"/proc/{_reaper}/task/{_reaper}/children")
        if children is not None:
            return [pid for pid in map(int, children.split()) if pid != me]
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me]


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in threads:
            children = _read(f"/proc/{parent}/task/{tid}/children") or b""
            for child in children.split():
                found.append(int(child))
                todo.append(int(child))
    return found


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _carries(pid: int, needle: bytes) -> bool:
    data = _read(f"/proc/{pid}/environ")
    return data is not None and (data.startswith(needle) or b"\0" + needle in data)


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, READ_SIZE)
        # A short read is the end (procfs); read on only after a full one.
        while len(data) % READ_SIZE == 0 and 0 < len(data) < MAX_READ:
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                break
            data += chunk
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
