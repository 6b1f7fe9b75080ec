"""The purge permit: inside one transaction, the append-only triggers let DELETE through."""

from django.db import connections

PERMIT_TABLE = "auditlog_delete_permit"


def delete_permit_grant(granted_by: str, using: str = "default") -> None:
    """Allow deleting events until the caller's transaction ends. Invisible to every other
    connection (the row is uncommitted); remove it with delete_permit_revoke before commit."""
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("a delete permit only makes sense inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {PERMIT_TABLE} (granted_by) VALUES (%s)", [granted_by])


def delete_permit_revoke(using: str = "default") -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(f"DELETE FROM {PERMIT_TABLE}")
