"""The refusals of the service layer. Each carries the HTTP status and code a view renders it with,
and the request field at fault, so the command line and every API style can name it."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses. ``field`` is the request field at fault (None: the request as a whole)."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class SessionBusy(Conflict):
    """Another turn of the session is running; ``retry_after`` seconds is a sensible wait."""

    code = "session_busy"

    def __init__(self, message: str, field: str | None = None, *, retry_after: int):
        super().__init__(message, field)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class Unavailable(ServiceError):
    status, code = 503, "backend_unavailable"


class StoreUnavailable(Unavailable):
    """The session store does not answer (its server is down or restarting). Nothing was refused for
    the request's sake: the same request may succeed once the store is back, and clinvk reconnects by
    itself."""

    code = "store_unavailable"
    RETRY_AFTER_SECS = 5

    def __init__(self, message: str = "the session store is unreachable; try again shortly",
                 field: str | None = None):
        super().__init__(message, field)
        self.headers = {"Retry-After": str(self.RETRY_AFTER_SECS)}


class ShuttingDown(Exception):
    """The server is shutting down and ended (or would not start) this run: HTTP 503 in every API style.

    Not a :class:`ServiceError`: no task or step of a batch turns it into a failed result, the
    whole request is answered 503."""


class LimitExceeded(ServiceError):
    """A request asks for more than the server's limits allow (tasks per request, parallelism)."""

    status, code = 422, "validation_failed"
