"""Fail fast while PostgreSQL is out of reach, and notice at once when it is back.

When a request loses its connection (a frozen server, a partition, a server that went away),
the other threads of the process are about to wait the same bounds out, and requests queue
behind them. So the process suspects an outage: requests go to the database one at a time
(a trial), the rest answer 503 with Retry-After at once, and the first trial that gets
through ends the suspicion. A lock timeout or SQLite's busy database are not outages (the
database answers, other work goes on); neither is an exhausted pool.
"""

import logging
import os
import threading

from django.db import connection

logger = logging.getLogger(__name__)


class DatabaseOutage:
    def __init__(self):
        self.suspected = False
        self._trial = threading.Lock()

    def admit(self) -> bool | None:
        """None: no outage suspected; True: this request is the trial; False: answer 503 now."""
        if not self.suspected:
            return None
        return self._trial.acquire(blocking=False)

    def finished(self, trial: bool | None, *, failed: bool, lost: bool) -> None:
        """After a request: `failed` if the database failed it at all, `lost` if that left it
        without a working connection."""
        if lost and not self.suspected:
            self.suspected = True
            logger.warning("database connection lost: one request at a time tries it until one gets through")
        elif trial and not failed and self.suspected:
            self.suspected = False
            logger.warning("database reachable again")
        if trial:
            self._trial.release()


def connection_lost(exception: BaseException) -> bool:
    """Whether a database error left this thread without a working PostgreSQL connection."""
    if connection.vendor != "postgresql" or type(exception.__cause__).__name__ == "PoolTimeout":
        return False
    return not connection.is_usable()


database_outage = DatabaseOutage()


def _forget_after_fork() -> None:
    global database_outage
    database_outage = DatabaseOutage()


os.register_at_fork(after_in_child=_forget_after_fork)
