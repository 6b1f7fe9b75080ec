from django.db import close_old_connections, connection


def close_old_connections_between_units() -> None:
    """What Django does between requests, for long commands that have none: drop a connection
    past CONN_MAX_AGE or broken. Never inside a caller's transaction, which it would end."""
    if not connection.in_atomic_block:
        close_old_connections()
