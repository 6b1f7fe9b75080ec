"""Django's PostgreSQL backend with a health check that costs no round trip when nothing is wrong.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of every request on a
reused connection: a round trip per request, a fifth of an ingest request's database cost.
When the server ends a session (restart, pg_terminate_backend, idle_session_timeout), it
sends a FATAL message and closes the socket, so an idle connection whose socket is readable
is gone or has something to say: only then do we run Django's real check.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        if self.connection is None or self.connection.closed:
            return False
        try:
            readable, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return super().is_usable() if readable else True
