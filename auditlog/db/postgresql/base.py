"""Django's PostgreSQL backend, with every wait on the server bounded and a cheap health check.

Bounded: each psycopg connection is a `BoundedConnection`, whose waits for the server (a query,
a commit, a fetch, the health check) give up after `DATABASE_CLIENT_TIMEOUT` seconds and close
the connection; Django then raises OperationalError and the request answers 503. The server's
own bounds (statement_timeout, lock_timeout) end almost every stall first and keep the
connection usable; this one ends the stalls no server-side setting can: a frozen server or a
stalled disk, whose kernel keeps acknowledging while nothing answers.

Cheap health check: with CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of
every request on a reused connection: a round trip per request, a fifth of an ingest request's
database cost. When the server ends a session (restart, pg_terminate_backend,
idle_session_timeout), it sends a FATAL message and closes the socket, so an idle connection
whose socket is readable is gone or has something to say: it is replaced, with no round trip.
"""

import select
import time
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base
from psycopg import errors

from auditlog.db.request_guard import request_guard
from auditlog.monitoring import metrics


class BoundedConnection(psycopg.Connection):
    client_timeout: float | None = None  # seconds; None waits as long as the server takes

    def wait(self, gen, interval=psycopg.connection._WAIT_INTERVAL, timeout=None):
        if timeout is None:
            timeout = request_guard.wait_bound(self.client_timeout)
        try:
            return super().wait(gen, interval, timeout)
        except errors._WaitTimeout:  # psycopg's documented signal for `timeout` (private name)
            # Whatever the server is doing with this session is unknown now: abandon it, as
            # psycopg does when a cancelled query does not end.
            self.pgconn.finish()
            bound = (
                "DATABASE_CLIENT_TIMEOUT" if timeout == self.client_timeout else "DATABASE_REQUEST_TIMEOUT"
            )
            raise psycopg.OperationalError(
                f"the database did not answer within {timeout:g} s ({bound}); the connection was closed"
            ) from None


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Per thread (Django's wrappers are), kept across reconnects: auditlog.db.timeouts
        # changes it for commands that run long.
        self.client_timeout = settings.DATABASE_CLIENT_TIMEOUT
        self.session_timeouts: dict[str, str] = {}

    def ensure_connection(self):
        request_guard.enter_database()  # during a suspected outage, one request at a time
        super().ensure_connection()

    def get_new_connection(self, conn_params):
        started = time.monotonic()
        connection = super().get_new_connection(conn_params)  # from the pool, when pooling
        metrics.observe(metrics.CONNECTION_SECONDS, time.monotonic() - started)
        # Django builds the connection with psycopg.connect() (or takes it from the pool) and
        # offers no hook for its class; the subclass only adds a bound to `wait`.
        connection.__class__ = BoundedConnection
        connection.client_timeout = self.client_timeout
        return connection

    def init_connection_state(self):
        super().init_connection_state()
        if self.session_timeouts:  # a command's own bounds survive a reconnect
            with self.connection.cursor() as cursor:
                for name, value in self.session_timeouts.items():
                    cursor.execute("SELECT set_config(%s, %s, false)", [name, value])

    @contextmanager
    def _nodb_cursor(self):
        """CREATE and DROP DATABASE (test databases): maintenance, not a request; DROP waits for
        a checkpoint, seconds on a busy server."""
        with super()._nodb_cursor() as cursor:
            cursor.connection.client_timeout = None
            cursor.execute("SET statement_timeout = 0")
            yield cursor

    def is_usable(self):
        if self.connection is None or self.connection.closed:
            return False
        try:
            readable, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        # Readable while idle: the session is over, or the server has something to say. A new
        # connection costs less than asking, and asking can wait the client timeout out on a
        # network that drops packets (this check runs when each request starts).
        return not readable
