"""The native REST API under /api/v1: prompt, backends and sessions (:mod:`.views`), parallel, chain
and compare (:mod:`.orchestration`), jobs (:mod:`.jobs`); errors as problem+json (:mod:`.errors`), streams as NDJSON
(:mod:`.stream`)."""

from __future__ import annotations

from flask import Blueprint

from ..http.errors import register_renderer
from . import errors as problem
from . import jobs, orchestration, views

bp = Blueprint("native", __name__, url_prefix="/api/v1")
bp.register_blueprint(views.bp)
bp.register_blueprint(orchestration.bp)
bp.register_blueprint(jobs.bp)
register_renderer(bp, problem.render, problem.field)
