import logging

from django.db import InterfaceError, OperationalError
from django.http import Http404

import auditlog.outage
from auditlog import errors
from auditlog.outage import connection_lost

logger = logging.getLogger(__name__)
# /healthz needs no database; /readyz must ask it (it has its own bound, auditlog.readiness).
OWN_DATABASE_HANDLING = frozenset({"/healthz", "/readyz"})


class ApiErrorMiddleware:
    """Answer every failure under /api/ in the error shape; a database outage anywhere is a 503.

    While a database outage is suspected (auditlog.outage), one request at a time goes to the
    database and the others answer 503 at once.

    OperationalError covers SQLite's "database is locked" past the busy timeout, a PostgreSQL
    server that is down or restarting, a connection killed mid-request and psycopg's
    PoolTimeout (Django re-raises it as OperationalError). InterfaceError is a connection
    that was already closed. None of them mean the request was wrong: the client retries.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info in OWN_DATABASE_HANDLING:
            return self.get_response(request)
        outage = auditlog.outage.database_outage
        trial = outage.admit()
        if trial is False:
            return errors.error_response(errors.unavailable_error())
        request.auditlog_database_failure = None  # or "failed", or "lost" (the connection too)
        try:
            return self.get_response(request)
        finally:
            failure = request.auditlog_database_failure
            outage.finished(trial, failed=failure is not None, lost=failure == "lost")

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.error("database unavailable on %s %s: %r", request.method, request.path, exception)
            request.auditlog_database_failure = "lost" if connection_lost(exception) else "failed"
            return errors.error_response(errors.unavailable_error())
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, errors.ApiError):
            return errors.error_response(exception)
        if isinstance(exception, Http404):
            return errors.error_response(errors.ApiError(errors.NOT_FOUND, errors.MSG_NOT_FOUND))
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return errors.error_response(errors.ApiError(errors.INTERNAL_ERROR, errors.MSG_INTERNAL))
