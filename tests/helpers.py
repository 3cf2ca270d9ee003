"""Helpers every test module shares: process liveness, waiting for a condition, reading streams."""

from __future__ import annotations

import json
import os
import time
from typing import Callable


def alive(pid: int | None) -> bool:
    """True while the process exists and is not a zombie (a zombie runs nothing any more)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for(predicate: Callable[[], object], within: float = 30.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``within`` seconds passed (False)."""
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def wait_gone(*pids: int | None, within: float = 10.0) -> bool:
    """Whether every one of ``pids`` (None skipped) has ended within ``within`` seconds."""
    return wait_for(lambda: not any(alive(p) for p in pids if p), within)


def ndjson(response) -> list[dict]:
    """The objects of an NDJSON response (a Flask test response or anything with ``get_data``/``text``)."""
    text = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def group_alive(pgid: int) -> bool:
    """True while any process (not a zombie) of process group ``pgid`` exists."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            return True
    return False


def wait_groups_gone(*pgids: int, within: float = 10.0) -> bool:
    """Whether every process of each group in ``pgids`` has ended within ``within`` seconds."""
    return wait_for(lambda: not any(group_alive(g) for g in pgids), within, step=0.01)


def process_groups_under(pid: int) -> set[int]:
    """The process groups led by descendants of ``pid`` other than its own group: the CLI runs of a
    server whose master is ``pid`` (the CLIs run in their own sessions, the workers do not)."""
    parents: dict[int, tuple[int, int]] = {}  # pid → (ppid, pgrp)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = (int(fields[1]), int(fields[2]))
    own = parents.get(pid, (0, 0))[1]
    groups = set()
    for child, (_, pgrp) in parents.items():
        ancestor = child
        while ancestor in parents and ancestor != pid:
            ancestor = parents[ancestor][0]
        if ancestor == pid and child != pid and pgrp != own:
            groups.add(pgrp)
    return groups


def run_processes(ctx, target, args_list: list[tuple]) -> list[int | None]:
    """Start one process of ``ctx`` per argument tuple, wait for all (2 min each at most); their exit codes."""
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]
