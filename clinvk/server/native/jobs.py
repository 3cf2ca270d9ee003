"""The job endpoints of the native API: submit a run that outlives the request, list, show, follow its
events, cancel or delete it. Every job belongs to the caller's tenant; another tenant's jobs are 404."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from ...jobs import work as job_work
from ...jobs.model import KINDS, JobLimit, JobNotFound
from ...runner import check_open
from ..http.bodies import json_body, load
from ..http.context import for_caller, jobs, settings, tenant
from ..http.errors import ApiError
from . import job_events
from . import job_schemas as schemas

bp = Blueprint("jobs", __name__)

list_query = schemas.JobListQuerySchema()
events_query = schemas.JobEventsQuerySchema()
CANCEL_WAIT_SECS = 5.0  # a DELETE waits this long for a job running here to end, to answer its final state
LIMIT_RETRY_AFTER_SECS = 30


def find_job(job_id: str):
    runner = jobs()
    runner.expire_stale()
    try:
        return runner.store.get_job(job_id, tenant())
    except JobNotFound as exc:
        raise ApiError(404, str(exc), errors=[{"field": "path.job_id", "message": "no such job"}]) from None


@bp.post("/jobs")
def submit_job():
    """Start a run detached from this request: a prompt, or a parallel, chain or compare request.

    ---
    post:
      tags: [Jobs]
      operationId: submitJob
      requestBody:
        required: true
        content:
          application/json:
            schema:
              oneOf:
                - $ref: '#/components/schemas/JobPromptRequestSchema'
                - $ref: '#/components/schemas/JobParallelRequestSchema'
                - $ref: '#/components/schemas/JobChainRequestSchema'
                - $ref: '#/components/schemas/JobCompareRequestSchema'
      responses:
        202:
          description: The job, `queued`; `Location` is its URL. It runs for up to `jobs.timeout_secs`.
          headers:
            Location: {description: The job's URL, schema: {type: string}}
          content: {application/json: {schema: JobSchema}}
        400: {description: A task or step cannot run as given, content: {application/problem+json: {schema: ProblemSchema}}}
        404: {description: Unknown session_id, content: {application/problem+json: {schema: ProblemSchema}}}
        409: {description: Session cannot be continued, content: {application/problem+json: {schema: ProblemSchema}}}
        422: {description: Invalid request (the field is named), content: {application/problem+json: {schema: ProblemSchema}}}
        429:
          description: The tenant has `jobs.max_active_per_tenant` queued or running jobs (or rate limited)
          headers:
            Retry-After: {description: Seconds to wait before trying again, required: true, schema: {type: integer}}
          content: {application/problem+json: {schema: ProblemSchema}}
        503: {description: Backend not available, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    body = json_body()
    kind = body.pop("kind", "prompt")
    if kind not in KINDS:
        message = f"must be one of {', '.join(KINDS)}"
        raise ApiError(422, f"invalid request: body.kind: {message}", code="validation_failed",
                       errors=[{"field": "body.kind", "message": message}])
    spec = load(schemas.REQUEST_SCHEMAS[kind], body)
    check_open()  # a stopping server takes no job it would only fail (503 shutting_down)
    runner = jobs()
    work = job_work.build(for_caller(runner.service), kind, spec)  # a ServiceError is this request's 4xx
    try:
        job = runner.submit(tenant(), kind, {"kind": kind, **body}, work)
    except JobLimit as exc:
        raise ApiError(429, str(exc), code="too_many_jobs",
                       headers={"Retry-After": str(LIMIT_RETRY_AFTER_SECS)}) from None
    response = jsonify(job.to_dict())
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return response


@bp.get("/jobs")
def list_jobs():
    """List the caller's jobs, newest first, with filters and pagination.

    ---
    get:
      tags: [Jobs]
      operationId: listJobs
      parameters:
        - {in: query, name: status, schema: {type: string, enum: [queued, running, completed, failed, cancelled, interrupted]}}
        - {in: query, name: kind, schema: {type: string, enum: [prompt, parallel, chain, compare]}}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
        - {in: query, name: offset, schema: {type: integer, minimum: 0, maximum: 9007199254740992, default: 0}}
      responses:
        200: {description: A page of jobs, content: {application/json: {schema: JobListResponseSchema}}}
        422: {description: Invalid query, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    query = load(list_query, request.args.to_dict(), root="query")
    runner = jobs()
    runner.expire_stale()
    found, total = runner.store.list_jobs(tenant(), **query)
    return jsonify({"jobs": [job.to_dict() for job in found], "total": total,
                    "limit": query["limit"], "offset": query["offset"]})


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """Get one job: its status, timings and, once finished, its result.

    ---
    get:
      tags: [Jobs]
      operationId: getJob
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
      responses:
        200: {description: The job, content: {application/json: {schema: JobSchema}}}
        404: {description: No such job, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    job = find_job(job_id)
    return jsonify({**job.to_dict(), "request": job.request})


@bp.get("/jobs/<job_id>/events")
def job_events_view(job_id: str):
    """The job's unified events from the start or a position, following a running job until it ends.

    NDJSON lines with `seq`, or with `Accept: text/event-stream` SSE frames whose `id:` is the position
    (a reconnecting EventSource resumes after `Last-Event-ID`). Keep-alives while the job is quiet.
    Disconnecting never stops the job.

    ---
    get:
      tags: [Jobs]
      operationId: getJobEvents
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
        - {in: query, name: after, schema: {type: integer, minimum: 0, maximum: 9007199254740992}}
        - {in: query, name: follow, schema: {type: boolean, default: true}}
        - {in: header, name: Last-Event-ID, schema: {type: string}}
      responses:
        200:
          description: The events, ending when the job has ended.
          content:
            application/x-ndjson: {schema: JobEventSchema}
            text/event-stream: {schema: {type: string}}
        404: {description: No such job, content: {application/problem+json: {schema: ProblemSchema}}}
        422: {description: Invalid query or Last-Event-ID, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    query = load(events_query, request.args.to_dict(), root="query")
    after = query.get("after")
    if after is None:
        after = last_event_id()
    job = find_job(job_id)
    runner = jobs()
    sse = request.accept_mimetypes.best_match([job_events.NDJSON, job_events.SSE]) == job_events.SSE
    items = job_events.follow(runner.store, job.id, tenant(), after, live=query["follow"],
                              keepalive=settings().keepalive_interval_secs, expire_stale=runner.expire_stale,
                              stale_check_secs=runner.config.heartbeat_secs)
    return job_events.respond(items, sse)


def last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16:  # isdigit() alone takes "²", which int() refuses
        raise ApiError(422, "Last-Event-ID must be an event position (a non-negative integer)",
                       errors=[{"field": "header.Last-Event-ID", "message": "must be a non-negative integer"}])
    return int(raw)


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    """Cancel a queued or running job (its CLI process groups end), or delete a finished one.

    ---
    delete:
      tags: [Jobs]
      operationId: deleteJob
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
      responses:
        200:
          description: A finished job was deleted (`deleted`), or a running one cancelled (the job, `cancelled`).
          content: {application/json: {schema: {oneOf: [{$ref: '#/components/schemas/JobSchema'}, {$ref: '#/components/schemas/DeleteJobResponseSchema'}]}}}
        202: {description: Cancellation requested; the job ends shortly, content: {application/json: {schema: JobSchema}}}
        404: {description: No such job, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    job = find_job(job_id)
    runner = jobs()
    if job.finished:
        try:
            runner.store.delete_job(job.id, tenant())
        except JobNotFound as exc:
            raise ApiError(404, str(exc)) from None
        return jsonify({"deleted": True, "id": job.id})
    runner.cancel(job.id)
    deadline = time.monotonic() + CANCEL_WAIT_SECS
    while runner.runs_here(job.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    job = find_job(job_id)
    return jsonify(job.to_dict()), 200 if job.finished else 202
