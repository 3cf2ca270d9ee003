"""Orchestration endpoints of the native API: parallel, chain and compare (parallel and compare
streaming on request). Views parse, call :mod:`clinvk.orchestration`, render."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ... import orchestration
from ...orchestration import ParallelStream
from ..http.bodies import load
from ..http.context import service
from . import orchestration_schemas as schemas
from . import stream

bp = Blueprint("orchestration", __name__)

parallel_schema = schemas.ParallelRequestSchema()
chain_schema = schemas.ChainRequestSchema()
compare_schema = schemas.CompareRequestSchema()


def respond(run: ParallelStream):
    return stream.respond(run)


@bp.post("/parallel")
def parallel():
    """Run several prompts at once, on any backends; results in request order.

    ---
    post:
      tags: [Custom API]
      operationId: executeParallel
      requestBody:
        required: true
        content:
          application/json:
            schema: ParallelRequestSchema
      responses:
        200:
          description: Every task's result (a failed task is a result with `error`, not an HTTP error),
            or with `output_format` `stream-json` an NDJSON stream of the tasks' unified events.
          content:
            application/json:
              schema: ParallelResponseSchema
            application/x-ndjson:
              schema: TaskStreamEventSchema
        400: {description: A task cannot run as given,
              content: {application/problem+json: {schema: ProblemSchema}}}
        422: {description: Invalid request (the field is named),
              content: {application/problem+json: {schema: ProblemSchema}}}
        503: {description: A task's backend is not available,
              content: {application/problem+json: {schema: ProblemSchema}}}
    """
    spec = load(parallel_schema)
    batch = orchestration.parallel(service(), spec)
    if spec.stream:
        return respond(batch.stream())
    return jsonify(batch.run().to_dict())


@bp.post("/chain")
def chain():
    """Run prompts one after the other, feeding each step the previous step's output as `{{previous}}`.

    ---
    post:
      tags: [Custom API]
      operationId: executeChain
      requestBody:
        required: true
        content:
          application/json:
            schema: ChainRequestSchema
      responses:
        200: {description: The steps that ran, content: {application/json: {schema: ChainResponseSchema}}}
        400: {description: A step cannot run as given,
              content: {application/problem+json: {schema: ProblemSchema}}}
        422: {description: Invalid request (the field is named),
              content: {application/problem+json: {schema: ProblemSchema}}}
        503: {description: A step's backend is not available,
              content: {application/problem+json: {schema: ProblemSchema}}}
    """
    return jsonify(orchestration.chain(service(), load(chain_schema)).run().to_dict())


@bp.post("/compare")
def compare():
    """Ask several backends the same prompt; one result per backend, in request order.

    ---
    post:
      tags: [Custom API]
      operationId: executeCompare
      requestBody:
        required: true
        content:
          application/json:
            schema: CompareRequestSchema
      responses:
        200:
          description: One result per backend (an unknown or unavailable backend is a result with its
            `error`), or with `output_format` `stream-json` an NDJSON stream of their unified events,
            each tagged with `task` (the backend's index in `backends`).
          content:
            application/json:
              schema: CompareResponseSchema
            application/x-ndjson:
              schema: TaskStreamEventSchema
        400: {description: Invalid prompt or workdir, content: {application/problem+json: {schema: ProblemSchema}}}
        422: {description: Invalid request (the field is named),
              content: {application/problem+json: {schema: ProblemSchema}}}
    """
    spec = load(compare_schema)
    batch = orchestration.compare(service(), spec)
    if spec.stream:
        return respond(batch.stream())
    return jsonify(batch.run().compare_dict(spec.prompt, spec.backends))
