"""RequestObservationMiddleware, outermost: every request gets an id, every answer carries it
(X-Request-ID, and "request_id" in every error body), is counted in the metrics by route,
method and status, and is one JSON log line (logger auditlog.request): time, request id, route,
method, status, duration, the API key's prefix and the event count, never a token or a body.

The id is the X-Request-ID a trusted proxy sent (AUDITLOG_TRUSTED_PROXIES above 0; up to 128
printable characters without spaces), else a new one: a client cannot choose the id the
service logs unless a proxy vouches for it.
"""

import itertools
import logging
import os
import re
import threading
import time

from django.conf import settings

from auditlog.monitoring import metrics
from auditlog.monitoring.logs import REQUEST_ID

logger = logging.getLogger("auditlog.request")
_SANE_ID = re.compile(r"[\x21-\x7e]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestObservationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.static = settings.STATIC_URL

    def __call__(self, request):
        started = time.perf_counter()
        request_id = _request_id(request)
        request.request_id = request_id
        token = REQUEST_ID.set(request_id)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            self._observe(request, response.status_code, time.perf_counter() - started)
            return response
        finally:
            REQUEST_ID.reset(token)

    def _observe(self, request, status: int, seconds: float) -> None:
        match = getattr(request, "resolver_match", None)
        if match is not None:
            route = match.route or match.view_name
        elif request.path_info.startswith(self.static):
            route = "static"
        else:
            route = "unmatched"
        method = request.method if request.method in _METHODS else "other"
        if settings.AUDITLOG_METRICS:
            counted = _children.get((route, method, status))
            if counted is None:  # labels() costs a lock and a lookup: once per combination
                counted = _children[(route, method, status)] = (
                    metrics.REQUESTS.labels(route, method, str(status)),
                    metrics.REQUEST_SECONDS.labels(route, method),
                )
            counted[0].inc()
            counted[1].observe(seconds)
        if settings.AUDITLOG_REQUEST_LOG:
            logger.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "route": route,
                    "method": method,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "key": getattr(request, "auditlog_key_prefix", None),
                    "events": getattr(request, "auditlog_event_count", None),
                },
            )


_children: dict = {}


class _Ids(threading.local):
    """Request ids: 16 random hex digits drawn once per process and thread, then a count (32 hex
    digits in all): unique without a system call per request, as uuid4 would make."""

    def __init__(self):
        self.prefix = os.urandom(8).hex()
        self.count = itertools.count(1)
        self.pid = os.getpid()


_ids = _Ids()


def _new_id() -> str:
    if _ids.pid != os.getpid():  # a forked worker draws its own
        _ids.__init__()
    return f"{_ids.prefix}{next(_ids.count):016x}"


def _request_id(request) -> str:
    if settings.AUDITLOG_TRUSTED_PROXIES > 0:
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        if _SANE_ID.fullmatch(given):
            return given
    return _new_id()


def current_request_id() -> str | None:
    return REQUEST_ID.get()
