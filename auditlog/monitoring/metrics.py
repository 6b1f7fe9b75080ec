"""The service's Prometheus metrics, counted in the processes that serve requests.

Under gunicorn, every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode; config/gunicorn.conf.py sets a private directory when
none is given and removes a dead worker's live values), and GET /metrics adds them up, so a
scrape counts every worker's requests whichever worker answers it. Elsewhere (manage.py, tests)
the values live in the process.

Labels have bounded cardinality: a route is its URL pattern, a source is an API key's name (keys
are few), a cause one of CAUSES. Actors, actions, targets and paths never become labels.
AUDITLOG_METRICS=false turns counting off (the /metrics endpoint then answers 404).
"""

from django.conf import settings
from prometheus_client import Counter, Histogram

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "auditlog_http_requests",
    "HTTP requests answered, by route (URL pattern), method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "auditlog_http_request_duration_seconds",
    "Time from the request reaching the application to its answer, by route and method.",
    ["route", "method"],
    buckets=SECONDS,
)
EVENTS = Counter(
    "auditlog_events",
    "Events by the API key's name (source) and result: accepted (stored), replayed (stored "
    "before: the same key and body), conflict (the key reused with another body), rejected (invalid).",
    ["source", "result"],
)
# Why a request answered 503.
CAUSES = ("pool_exhausted", "database_timeout", "writer_queue", "outage_suspected", "database_unavailable")
UNAVAILABLE = Counter("auditlog_unavailable", "503 answers by cause.", ["cause"])
GROUP_COMMIT_ROWS = Histogram(
    "auditlog_group_commit_rows",
    "Rows per group-commit statement (single POSTs stored together).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
WRITER_QUEUE_SECONDS = Histogram(
    "auditlog_sqlite_writer_queue_wait_seconds",
    "SQLite: time a write waited for the writer queue (its turn to write).",
    buckets=SECONDS,
)
CONNECTION_SECONDS = Histogram(
    "auditlog_database_connection_wait_seconds",
    "PostgreSQL: time to get a connection: from the pool when pooling (DATABASE_POOL), else a new one.",
    buckets=SECONDS,
)


def enabled() -> bool:
    return settings.AUDITLOG_METRICS


_events: dict = {}


def count_events(source: str, result: str, count: int = 1) -> None:
    if count and enabled():
        child = _events.get((source, result))
        if child is None:  # labels() once per source and result
            child = _events[(source, result)] = EVENTS.labels(source, result)
        child.inc(count)


def count_unavailable(exception: BaseException) -> str:
    """Count a 503 by its cause; return the cause."""
    cause = unavailable_cause(exception)
    if enabled():
        UNAVAILABLE.labels(cause).inc()
    return cause


def unavailable_cause(exception: BaseException) -> str:
    """The cause of a 503, from the exception Django raised (and what it wraps)."""
    from auditlog.db.request_guard import MSG_NOT_YOUR_TURN

    text = str(exception)
    chain = [exception, exception.__cause__, exception.__context__]
    names = {type(link).__name__ for link in chain if link is not None}
    if "PoolTimeout" in names or "couldn't get a connection" in text:
        return "pool_exhausted"
    if MSG_NOT_YOUR_TURN in text:
        return "outage_suspected"
    if "writer queue" in text or "database is locked" in text:
        return "writer_queue"
    if names & {"QueryCanceled", "LockNotAvailable"} or "timeout" in text.lower() or "timed out" in text:
        return "database_timeout"
    return "database_unavailable"


def observe(histogram: Histogram, seconds: float) -> None:
    if enabled():
        histogram.observe(seconds)
