"""What one request may spend on PostgreSQL: a budget over all its waits, and, during a
suspected outage, a turn.

The budget: each wait is bounded (DATABASE_CLIENT_TIMEOUT), but a request makes several (the
key's last use, the insert, the lookup of a replayed key, a batch's statements), and on a
server that answers slowly they add up. DATABASE_REQUEST_TIMEOUT bounds them together; the
time the client takes to send its body does not count.

The turn: when a request loses its connection after waiting for it (a frozen server, a
partition), the other threads of the process are about to wait the same bounds out, and
requests queue behind them. So the process suspects an outage: one request at a time may wait
on the database (the trial), the others get OperationalError at once (503 with Retry-After),
and a trial that gets through ends the suspicion. The turn is taken at the request's first
use of the database, so a request that never uses it (a 401, a slow upload) neither holds the
turn nor ends the suspicion. A lock timeout or SQLite's busy database are not outages (the
database answers, other work goes on); neither is an exhausted pool, nor a connection lost at
once (a killed backend, a restarting server refusing connections): failing fast needs no gate.

Threads outside a request (commands, the readiness probe) are neither budgeted nor gated.
"""

import logging
import os
import threading
import time

from django.db import OperationalError

logger = logging.getLogger(__name__)

MSG_NOT_YOUR_TURN = "the database is unreachable; another request of this process is trying it"
# A request that lost its connection after waiting at least this long suspects an outage.
SLOW_LOSS_SECONDS = 1.0
# A wait past the budget still gets this long: a server that answers at once lets the request
# finish; one that does not has its connection closed, which leaves no state behind.
LAST_CHANCE_SECONDS = 0.01


class _Request(threading.local):
    active = False
    deadline = 0.0
    budget = 0.0
    holds_turn = False


class RequestGuard:
    def __init__(self):
        self.suspected = False
        self._turn = threading.Lock()
        self._request = _Request()

    def begin(self, budget: float) -> None:
        request = self._request
        request.active, request.holds_turn = True, False
        request.deadline, request.budget = time.monotonic() + budget, budget

    def extend(self, seconds: float) -> None:
        """Time spent on something that is not the database's (the client sending its body)."""
        self._request.deadline += seconds

    def end(self, *, failed: bool, lost: bool) -> None:
        """`failed`: the database failed the request; `lost`: that left it without a connection."""
        request = self._request
        waited = request.budget - (request.deadline - time.monotonic())  # the body's time excluded
        if lost and waited >= SLOW_LOSS_SECONDS and not self.suspected:
            self.suspected = True
            logger.warning("database connection lost: one request at a time tries it until one gets through")
        elif request.holds_turn and not failed and self.suspected:
            self.suspected = False
            logger.warning("database reachable again")
        if request.holds_turn:
            self._turn.release()
        request.active = request.holds_turn = False

    def enter_database(self) -> None:
        """Before a request uses the database: raise OperationalError if it may not now."""
        request = self._request
        if not (self.suspected and request.active) or request.holds_turn:
            return
        if not self._turn.acquire(blocking=False):
            raise OperationalError(MSG_NOT_YOUR_TURN)
        request.holds_turn = True

    def wait_bound(self, client_timeout: float | None) -> float | None:
        """How long the next wait for the database may take."""
        request = self._request
        if not request.active:
            return client_timeout
        remaining = max(request.deadline - time.monotonic(), LAST_CHANCE_SECONDS)
        return remaining if client_timeout is None else min(client_timeout, remaining)


def connection_lost(db) -> bool:
    """Whether a database error left `db` (this thread's wrapper) without a working PostgreSQL
    connection. A pool that could not hand one out in time is overloaded, not unreachable."""
    if db.vendor != "postgresql":
        return False
    if db.connection is None and getattr(db, "pool", None) is not None:
        return False  # PoolTimeout: no connection was handed out
    return not db.is_usable()


request_guard = RequestGuard()


def _forget_after_fork() -> None:
    """In place, so every module that imported request_guard sees the child's state: a turn
    held by a thread at the fork would otherwise stay held in a child without that thread."""
    request_guard.__init__()


os.register_at_fork(after_in_child=_forget_after_fork)
