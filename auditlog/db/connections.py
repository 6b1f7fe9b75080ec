from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections


def close_old_connections_between_units() -> None:
    """What Django does between requests, for long commands that have none: drop a connection
    past CONN_MAX_AGE or broken. Never inside a caller's transaction, which it would end."""
    if not connection.in_atomic_block:
        close_old_connections()


def pooled_connection_release() -> None:
    """Give a pooled connection back before waiting on something else (a client's upload,
    another thread): the pool is small, and the wait is not the database's."""
    db = connections[DEFAULT_DB_ALIAS]
    if getattr(db, "pool", None) is not None and db.connection is not None and not db.in_atomic_block:
        db.close()  # returns it to the pool
