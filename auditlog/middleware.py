import logging

from django.db import InterfaceError, OperationalError
from django.http import Http404

from auditlog import errors

logger = logging.getLogger(__name__)


class ApiErrorMiddleware:
    """Answer every failure under /api/ in the error shape; a database outage anywhere is a 503.

    OperationalError covers SQLite's "database is locked" past the busy timeout, a PostgreSQL
    server that is down or restarting, a connection killed mid-request and psycopg's
    PoolTimeout (Django re-raises it as OperationalError). InterfaceError is a connection
    that was already closed. None of them mean the request was wrong: the client retries.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.error("database unavailable on %s %s: %r", request.method, request.path, exception)
            return errors.error_response(errors.unavailable_error())
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, errors.ApiError):
            return errors.error_response(exception)
        if isinstance(exception, Http404):
            return errors.error_response(errors.ApiError(errors.NOT_FOUND, errors.MSG_NOT_FOUND))
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return errors.error_response(errors.ApiError(errors.INTERNAL_ERROR, errors.MSG_INTERNAL))
