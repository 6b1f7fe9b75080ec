"""Reads from a streaming replica (docs/replicas.md).

With DATABASE_REPLICA_URL set, the "replica" alias exists and ReplicaRouter sends the reads of
the events there, but only inside a read scope (`replica_reads`: the admin's list, detail and
exports, the API's GETs, auditlog_export), only while no transaction is open on the primary,
and only while the replica is known to be up and at most DATABASE_REPLICA_MAX_LAG_SECONDS
behind. Everything else reads the primary: writes, the ingest path (its idempotency look-ups
run in no scope), sealing and the trail, API keys (a revoked key must fail at once), sessions.

A read the replica fails (down, a connection killed, a query cancelled by replay) runs again
on the primary (`replica_fallback`), so the request answers as if there were no replica.
"""

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

REPLICA = "replica"
# Read-only once written, and never read to decide a write: the events. (API keys are not: a
# key revoked on the primary must be refused at once, not after the replica replays it.)
REPLICA_MODELS = frozenset({"auditlog.actionlog"})

MSG_NOT_STANDBY = "not in recovery: a promoted or independent server, not a replica of this primary"
MSG_NO_REPLAY = "behind the primary, and has replayed no transaction since it started"

T = TypeVar("T")


@dataclass(frozen=True)
class ReplicaState:
    """What the last check found. `lag`: seconds behind the primary then (None: unknown)."""

    up: bool
    lag: float | None
    checked_at: float  # time.monotonic()
    reason: str = ""

    def staleness(self, now: float) -> float | None:
        """At most how far behind the primary the replica is now: the lag found, plus what the
        primary may have committed since the check."""
        return None if not self.up or self.lag is None else self.lag + (now - self.checked_at)


def replica_lag(
    *, primary_lsn: int, primary_time: datetime, in_recovery: bool, replay_lsn: int | None, replay_time
) -> tuple[float | None, str]:
    """How far behind the primary a replica's data is, in the primary's own clock, and why not
    when that is unknown.

    The primary's flushed WAL position is read first, then the replica's replay position.
    Replayed up to it (but for a record the flush cut at a page's end, which holds no commit):
    nothing committed on the primary is missing, so the lag is 0, however long the primary has
    been idle (where now() - pg_last_xact_replay_timestamp() would grow). Behind it: the replica
    holds every transaction committed up to the last one it replayed, so the lag is the primary's
    time minus that commit's time. This never reports less than the real lag; it may report
    more while a long transaction writes WAL it has not committed yet.
    """
    if not in_recovery:
        return None, MSG_NOT_STANDBY
    if replay_lsn is not None and not _record_fits(replay_lsn, primary_lsn):
        return 0.0, ""
    if replay_time is None:
        return None, MSG_NO_REPLAY
    return max(0.0, (primary_time - replay_time).total_seconds()), ""


# PostgreSQL's WAL layout (access/xlog_internal.h): pages of XLOG_BLCKSZ, each starting with a
# header (a long one at a segment's start), and records of at least MAXALIGN(SizeOfXLogRecord
# + 1) bytes, which may span pages. Defaults of a build and of initdb; another segment size only
# makes the check below more cautious.
WAL_PAGE, WAL_SEGMENT = 8192, 16 * 1024 * 1024
PAGE_HEADER, SEGMENT_HEADER = 24, 40
SMALLEST_RECORD = 32


def _record_fits(start: int, end: int) -> bool:
    """Whether a whole WAL record fits between two positions. A replica replays whole records
    only: the flushed position can be a page boundary in the middle of a record (the WAL writer
    flushes full pages), where the replay position stays at the previous record's end."""
    if end - start >= 2 * WAL_PAGE:
        return True
    usable = end - start
    boundary = -(-start // WAL_PAGE) * WAL_PAGE
    while boundary < end:
        usable -= min(SEGMENT_HEADER if boundary % WAL_SEGMENT == 0 else PAGE_HEADER, end - boundary)
        boundary += WAL_PAGE
    return usable >= SMALLEST_RECORD


def replica_check() -> ReplicaState:
    """Ask the primary, then the replica (that order: see replica_lag). Never raises: a replica
    that cannot be asked is down, and the reads go to the primary."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint, clock_timestamp()"
            )
            primary_lsn, primary_time = cursor.fetchone()
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(
                "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,"
                " pg_last_xact_replay_timestamp()"
            )
            in_recovery, replay_lsn, replay_time = cursor.fetchone()
    except DatabaseError as exc:
        _close_if_broken()
        return ReplicaState(up=False, lag=None, checked_at=time.monotonic(), reason=_first_line(exc))
    lag, reason = replica_lag(
        primary_lsn=primary_lsn,
        primary_time=primary_time,
        in_recovery=in_recovery,
        replay_lsn=replay_lsn,
        replay_time=replay_time,
    )
    return ReplicaState(up=in_recovery, lag=lag, checked_at=time.monotonic(), reason=reason)


class ReplicaHealth:
    """The replica's state, per process, checked again at most every DATABASE_REPLICA_CHECK_SECONDS
    by one request thread; the others meanwhile use the last state (none yet: the primary)."""

    def __init__(self, check: Callable[[], ReplicaState] = replica_check):
        self._check = check
        self._checking = threading.Lock()
        self.state: ReplicaState | None = None

    def current(self) -> ReplicaState | None:
        state, interval = self.state, settings.DATABASE_REPLICA_CHECK_SECONDS
        stale = state is None or time.monotonic() - state.checked_at >= interval
        if stale and self._checking.acquire(blocking=False):
            try:
                self.state = state = self._check()
            finally:
                self._checking.release()
        return state

    def usable(self) -> bool:
        state = self.current()
        staleness = None if state is None else state.staleness(time.monotonic())
        return staleness is not None and staleness <= settings.DATABASE_REPLICA_MAX_LAG_SECONDS

    def mark_down(self, reason: str) -> None:
        """Until the next check: a read just lost its connection to the replica."""
        self.state = ReplicaState(up=False, lag=None, checked_at=time.monotonic(), reason=reason)


replica_health = ReplicaHealth()


def _forget_after_fork() -> None:
    """A gunicorn worker checks for itself; a check lock held at the fork would stay held."""
    replica_health.__init__(replica_health._check)


os.register_at_fork(after_in_child=_forget_after_fork)


class _Scope(threading.local):
    depth = 0  # inside replica_reads()
    routed = 0  # reads sent to the replica by this thread so far


_scope = _Scope()


@contextmanager
def replica_reads():
    """Let the reads of the events in this block go to the replica, when it is fit for them."""
    _scope.depth += 1
    try:
        yield
    finally:
        _scope.depth -= 1


@contextmanager
def _primary_reads():
    saved, _scope.depth = _scope.depth, 0
    try:
        yield
    finally:
        _scope.depth = saved


def replica_fallback(read: Callable[..., T], *args) -> T:
    """read(*args); if the replica failed it, read(*args) again on the primary. Reads only: a
    failure that was not the replica's is raised as it is."""
    before = _scope.routed
    try:
        return read(*args)
    except (OperationalError, InterfaceError) as exc:
        if _scope.routed == before or not connections[REPLICA].errors_occurred:
            raise
        logger.warning("replica read failed, reading the primary instead: %s", _first_line(exc))
        if _close_if_broken():
            replica_health.mark_down(_first_line(exc))
    with _primary_reads():
        return read(*args)


def reads_from_replica(view):
    """Decorate a read view (a function or a method): its reads of the events, the template it
    renders and the body it streams included, may go to the replica; if the replica fails
    them, the view runs again on the primary."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        with replica_reads():
            return replica_fallback(lambda: _rendered(view(*args, **kwargs)))

    return wrapper


def _rendered(response):
    # A TemplateResponse runs the admin's queries when it renders, after the view returns.
    if hasattr(response, "render") and not response.is_rendered:
        response.render()
    if response.streaming:
        response.streaming_content = _each_in_scope(response.streaming_content)
    return response


def _each_in_scope(chunks: Iterable[T]) -> Iterator[T]:
    """A streamed body reads as its chunks are sent, after the view has returned."""
    chunks = iter(chunks)
    while True:
        with replica_reads():
            chunk = next(chunks, _END)
        if chunk is _END:
            return
        yield chunk


_END = object()


def _close_if_broken() -> bool:
    """Close the replica connection of this thread if it is lost or none was had (a pool that
    could not hand one out counts too: the primary serves instead); say whether it was."""
    replica = connections[REPLICA]
    if replica.is_usable():
        return False
    if not replica.in_atomic_block:
        replica.close()
    return True


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class ReplicaRouter:
    """DATABASE_ROUTERS with a replica: see the module's docstring for which reads go there."""

    def db_for_read(self, model, **hints):
        if (
            _scope.depth
            and model._meta.label_lower in REPLICA_MODELS
            and not connections[DEFAULT_DB_ALIAS].in_atomic_block
            and replica_health.usable()
        ):
            _scope.routed += 1
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints):
        # Never the instance's own database: an event read from the replica is written (if ever)
        # to the primary.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA} or None

    def allow_migrate(self, db, app_label, **hints):
        return False if db == REPLICA else None


def replica_status() -> str | None:
    """One line for the admin and auditlog_dbcheck: where reads go and why (None: no replica)."""
    if REPLICA not in settings.DATABASES:
        return None
    state = replica_health.current()
    bound = settings.DATABASE_REPLICA_MAX_LAG_SECONDS
    if state is None:
        return "replica not checked yet: reads from the primary"
    if not state.up or state.lag is None:
        return f"replica unusable ({state.reason}): reads from the primary"
    staleness = state.staleness(time.monotonic())
    if staleness > bound:
        return f"replica {staleness:.1f} s behind, over the {bound:g} s bound: reads from the primary"
    return f"reads from the replica, {state.lag:.1f} s behind the primary (bound {bound:g} s)"
