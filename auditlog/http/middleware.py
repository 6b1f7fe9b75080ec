import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404, HttpResponse

from auditlog.db.request_guard import connection_lost, request_guard
from auditlog.http import errors
from auditlog.http.endpoint import MSG_BODY_TIMEOUT
from auditlog.http.read_deadline import read_in_time
from auditlog.http.site_middleware import PROBES, is_api_request
from auditlog.monitoring import metrics

logger = logging.getLogger(__name__)


class ApiErrorMiddleware:
    """Answer every failure under /api/ in the error shape; a database outage anywhere is a 503.

    It also opens and closes each request's database budget and turn (auditlog.db.request_guard):
    all the waits of a request together are bounded, and while an outage is suspected one
    request at a time uses the database and the others answer 503 at once.

    OperationalError covers SQLite's "database is locked" past the busy timeout, a PostgreSQL
    server that is down or restarting, a connection killed mid-request and psycopg's
    PoolTimeout (Django re-raises it as OperationalError). InterfaceError is a connection
    that was already closed. None of them mean the request was wrong: the client retries.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_request(request):
            # What CommonMiddleware did for these before it became site-only: refuse a Host not
            # in ALLOWED_HOSTS (DisallowedHost: a 400), and declare the length of the answer.
            request.get_host()
            return _with_length(self._call(request))
        return self._call(request)

    def _call(self, request):
        if request.path_info in PROBES:
            return self.get_response(request)
        request_guard.begin(settings.DATABASE_REQUEST_TIMEOUT)
        request.auditlog_database_failure = None  # or "failed", or "lost" (the connection too)
        try:
            api = request.path_info.startswith("/api/")
            if not api and _has_body(request):
                # Django reads the admin's form bodies itself, blocking, from the CSRF check on:
                # read them here, within the deadline. (The API reads its own, after the key.)
                timeout = settings.AUDITLOG_BODY_TIMEOUT
                if read_in_time(request, timeout, lambda: request.body) is None:
                    return HttpResponse(MSG_BODY_TIMEOUT.format(seconds=timeout), status=408)
            response = self.get_response(request)
            if api:
                response["Cache-Control"] = "no-store"  # audit events and errors: never cached
            return response
        finally:
            failure = request.auditlog_database_failure
            request_guard.end(failed=failure is not None, lost=failure == "lost")

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            cause = metrics.count_unavailable(exception)
            logger.error(
                "database unavailable on %s %s: %r",
                request.method,
                request.path,
                exception,
                extra={"cause": cause},
            )
            request.auditlog_database_failure = "lost" if connection_lost(connection) else "failed"
            return errors.error_response(errors.unavailable_error())
        if isinstance(exception, errors.ApiError):  # raised only by JSON endpoints (the probes too)
            return errors.error_response(exception)
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, Http404):
            return errors.error_response(errors.ApiError(errors.NOT_FOUND, errors.MSG_NOT_FOUND))
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return errors.error_response(errors.ApiError(errors.INTERNAL_ERROR, errors.MSG_INTERNAL))


def _with_length(response):
    if not response.streaming and not response.has_header("Content-Length"):
        response.headers["Content-Length"] = str(len(response.content))
    return response


def _has_body(request) -> bool:
    length = request.META.get("CONTENT_LENGTH") or "0"
    return length != "0" or "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
