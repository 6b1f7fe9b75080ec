"""Readiness: does the database answer? Told within AUDITLOG_READYZ_TIMEOUT, whatever it does.

The probe runs on a thread of its own, so the request can stop waiting at the bound even while
a connect or a query is stuck (PostgreSQL's connect_timeout is 5 s, a frozen server takes the
client timeout to give up on). Requests that arrive while a probe is running wait for that
probe instead of starting another: a load balancer polling a dead database ties up at most
one thread per process, never one per poll. The probe opens a connection and closes it after
its query, so "ready" means a new connection works too.
"""

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


class _Readiness:
    def __init__(self):
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._probe = None

    def check(self, timeout: float) -> bool:
        with self._lock:
            if self._probe is None or self._probe.done():
                self._probe = self._executor.submit(_database_answers)
            probe = self._probe
        try:
            return probe.result(timeout)
        except FutureTimeout:
            logger.warning("readiness: the database did not answer within %g s", timeout)
            return False


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError as exc:
        logger.warning("readiness: %r", exc)
        return False
    finally:
        connection.close()


_readiness = _Readiness()


def database_ready(timeout: float) -> bool:
    return _readiness.check(timeout)


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts its own executor."""
    global _readiness
    _readiness = _Readiness()


os.register_at_fork(after_in_child=_forget_after_fork)
