"""Append-only: the triggers that guard the trail's tables, and the purge permit that lets
DELETE through them inside one transaction (auditlog/migrations/0005 to 0009)."""

from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

PERMIT_TABLE = "auditlog_delete_permit"
GUARDED_TABLES = (
    "auditlog_actionlog",
    "auditlog_trailleaf",
    "auditlog_trailnode",
    "auditlog_checkpoint",
    "auditlog_retentionrecord",
)
# On PostgreSQL each guarded table has both, enabled; on SQLite the named triggers exist.
POSTGRESQL_TRIGGERS = ("auditlog_append_only", "auditlog_no_truncate")
SQLITE_TRIGGERS = (
    "auditlog_no_update",
    "auditlog_no_delete",
    "auditlog_trailleaf_no_update",
    "auditlog_trailleaf_no_delete",
    "auditlog_trailnode_no_update",
    "auditlog_trailnode_no_delete",
    "auditlog_checkpoint_no_update",
    "auditlog_checkpoint_no_delete",
    "auditlog_retentionrecord_no_update",
    "auditlog_retentionrecord_no_delete",
)
GUARD_MIGRATION = ("auditlog", "0009_chain_to_tree")


def delete_permit_grant(granted_by: str, using: str = "default") -> None:
    """Allow deleting events until the caller's transaction ends. Invisible to every other
    connection (the row is uncommitted) and, on PostgreSQL, void in any other transaction even
    if committed; remove it with delete_permit_revoke before commit. Only the maintenance role
    may write one (auditlog/db/roles.py)."""
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("a delete permit only makes sense inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {PERMIT_TABLE} (granted_by) VALUES (%s)", [granted_by])


def delete_permit_revoke(using: str = "default") -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(f"DELETE FROM {PERMIT_TABLE}")


def guard_missing(using: str = "default") -> list[str] | None:
    """The trail's triggers that are missing or disabled, as 'table: trigger' (PostgreSQL) or
    trigger names (SQLite); None before the migration that creates them all has run."""
    connection = connections[using]
    if GUARD_MIGRATION not in MigrationRecorder(connection).applied_migrations():
        return None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE c.relnamespace = current_schema()::regnamespace AND t.tgenabled IN ('O', 'A')"
            )
            present = {f"{table}: {name}" for table, name in cursor.fetchall()}
            wanted = [f"{table}: {name}" for table in GUARDED_TABLES for name in POSTGRESQL_TRIGGERS]
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            present = {name for (name,) in cursor.fetchall()}
            wanted = list(SQLITE_TRIGGERS)
    return [name for name in wanted if name not in present]
