"""Database bounds for work that legitimately runs longer than a request (commands)."""

import functools
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection, connections


@contextmanager
def database_timeouts(*, statement: float, lock: float, idle_in_transaction: float | None = None):
    """Run the block with these PostgreSQL bounds (seconds; 0 means none) instead of a request's.

    The client-side deadline follows the statement bound: a second above it, or none. The
    settings are kept across a reconnect inside the block and restored after it. SQLite has
    none of these waits (its writers are bounded by SQLITE_BUSY_TIMEOUT): a no-op there.
    """
    if connection.vendor != "postgresql":
        yield
        return
    values = {"statement_timeout": statement, "lock_timeout": lock}
    if idle_in_transaction is not None:
        values["idle_in_transaction_session_timeout"] = idle_in_transaction
    saved = connection.session_timeouts, connection.client_timeout
    connection.session_timeouts = {name: f"{round(seconds * 1000)}ms" for name, seconds in values.items()}
    connection.client_timeout = statement + 1.0 if statement else None
    _apply(connection, connection.session_timeouts, connection.client_timeout)
    try:
        yield
    finally:
        connection.session_timeouts, connection.client_timeout = saved
        outer = {name: connection.session_timeouts.get(name) for name in values}  # None: RESET
        try:
            _apply(connection, outer, connection.client_timeout)
        except DatabaseError:  # the block left the connection broken: a new one has the defaults
            if not connection.in_atomic_block:
                connection.close()


def _apply(db, values: dict[str, str | None], client_timeout: float | None) -> None:
    """Set (None: RESET to the connection's defaults) on db's open connection, if any."""
    if db.connection is None or db.connection.closed:
        return  # the next connection applies them (DatabaseWrapper.init_connection_state)
    db.connection.client_timeout = client_timeout
    with db.cursor() as cursor:
        for name, value in values.items():
            if value is None:
                cursor.execute(f"RESET {name}")  # one of our own names, never input
            else:
                cursor.execute("SELECT set_config(%s, %s, false)", [name, value])


def command_timeouts(*, statement: float, lock: float, idle_in_transaction: float | None = None):
    """Decorate a command's handle(): it runs under database_timeouts(...)."""

    def decorator(handle):
        @functools.wraps(handle)
        def wrapper(*args, **kwargs):
            with database_timeouts(statement=statement, lock=lock, idle_in_transaction=idle_in_transaction):
                return handle(*args, **kwargs)

        return wrapper

    return decorator


def migrate_started(sender, using, **kwargs) -> None:
    """pre_migrate: a migration may build an index over millions of rows, so no statement bound;
    a lock wait stays bounded, so a migration queued behind a long transaction fails (and is
    rerun) instead of stalling every writer queued behind it."""
    db = connections[using]
    if db.vendor == "postgresql" and not db.session_timeouts:
        db.session_timeouts = {"statement_timeout": "0", "idle_in_transaction_session_timeout": "0"}
        db.client_timeout = None
        _apply(connections[using], db.session_timeouts, None)


def migrate_finished(sender, using, **kwargs) -> None:
    """post_migrate: back to a request's bounds (tests go on using this connection)."""
    db = connections[using]
    if db.vendor == "postgresql" and db.session_timeouts:
        names = db.session_timeouts
        db.session_timeouts, db.client_timeout = {}, settings.DATABASE_CLIENT_TIMEOUT
        _apply(db, dict.fromkeys(names), db.client_timeout)
