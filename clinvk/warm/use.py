"""The run lifecycle's one question to the pool: is there a warm process for this launch?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends import Invocation
from .process import WarmProcess
from .recipes import Isolate, recipe_for

if TYPE_CHECKING:
    from ..lifecycle import PreparedRun


def take_warm(prepared: "PreparedRun", launch: Invocation, isolate: Isolate) -> WarmProcess | None:
    """A warm process already handed ``launch``'s prompt, or None (spawn cold). ``launch`` is the run's
    launch before isolation; ``isolate`` gives each warm process its own throwaway home and sandbox,
    and its ``launched`` is what it runs as.

    Only ephemeral runs qualify: a warm process keeps no session, so no state passes between runs.
    """
    pool = prepared.service.warm_pool
    name = prepared.backend.name
    if pool is None or not prepared.ephemeral or prepared.spec.resume_id or not pool.poolable(name):
        return None
    recipe = recipe_for(name, launch, prepared.invocation.argv[0], isolate)
    if recipe is None:
        return None
    process = pool.take(recipe)
    if process is not None:
        process.begin(launch.stdin_text, prepared.service.config.server.request_timeout_secs)
    return process
