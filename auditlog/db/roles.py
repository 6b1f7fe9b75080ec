"""Two roles on PostgreSQL: the maintenance role owns the tables (it migrates, seals and purges);
the runtime role, which the service connects as, gets only what serving needs.

An owner can do anything to its tables, triggers included (ALTER TABLE ... DISABLE TRIGGER,
DROP TRIGGER). So the append-only rule holds against the credentials the service holds only
when the service is not the owner: events are SELECT and INSERT for it, the seal tables SELECT,
the purge permit nothing. `exposures` reads from the live catalog what a role can do to the
trail; `grants` is the SQL that gives the runtime role its privileges (docs/roles.md).
"""

import functools

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections

from auditlog.db.partitions import partitions_list
from auditlog.models import ActionLog, Checkpoint, EventKey, RetentionRecord, TrailLeaf, TrailNode
from auditlog.trail.append_only import PERMIT_TABLE

EVENTS = ActionLog._meta.db_table
SEALS = tuple(model._meta.db_table for model in (TrailLeaf, TrailNode, Checkpoint, RetentionRecord))
# The trail: what no role but the maintenance role may change or remove.
TRAIL = (EVENTS, *SEALS, PERMIT_TABLE)

# What the runtime role may do, by table; every other table (API keys, users, sessions,
# lockouts, the admin's log) is the service's own data: DEFAULT_PRIVILEGES.
RUNTIME_PRIVILEGES = {
    EVENTS: ("SELECT", "INSERT"),  # producers append; nothing changes or removes an event
    EventKey._meta.db_table: ("SELECT", "INSERT"),  # a key lives as long as its event
    **dict.fromkeys(SEALS, ("SELECT",)),  # verify reads them; sealing and purge write them
    PERMIT_TABLE: (),  # a permit to delete is the maintenance role's alone
    "django_migrations": ("SELECT",),  # the schema is the maintenance role's
}
DEFAULT_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
INSUFFICIENT_PRIVILEGE = "42501"  # SQLSTATE of "permission denied" (and of our triggers' refusals)

# Privileges on a trail table that let a role change or remove what is in it. TRIGGER would
# let it add a trigger of its own; INSERT into the seal tables would forge seals and
# checkpoints, into the permit table, a permit.
CHANGING = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")


def runtime_role(using: str = "default") -> str:
    """The role the service connects as: DATABASE_RUNTIME_ROLE, by default DATABASE_URL's user;
    the connection's own role when neither names one."""
    if settings.AUDITLOG_RUNTIME_ROLE:
        return settings.AUDITLOG_RUNTIME_ROLE
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def _tables(using: str) -> tuple[str, list[str]]:
    """The schema the connection works in, and its tables (not the events' partitions: every
    role but their owner reaches them through the events table, with its privileges)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT current_schema(), array_agg(relname::text ORDER BY relname) FROM pg_class"
            " WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')"
            " AND NOT relispartition"
        )
        schema, tables = cursor.fetchone()
    return schema, tables or []


def grants(role: str, using: str = "default") -> list[str]:
    """The statements that give `role` exactly the runtime privileges on this database's tables
    (revoking whatever else it had on them). Run by the tables' owner."""
    quote = connections[using].ops.quote_name
    schema, tables = _tables(using)
    who = quote(role)
    statements = [f"GRANT USAGE ON SCHEMA {quote(schema)} TO {who}"]
    for table in tables:
        name = f"{quote(schema)}.{quote(table)}"
        statements.append(f"REVOKE ALL ON TABLE {name} FROM {who}")
        privileges = RUNTIME_PRIVILEGES.get(table, DEFAULT_PRIVILEGES)
        if privileges:
            statements.append(f"GRANT {', '.join(privileges)} ON TABLE {name} TO {who}")
    return statements


def grants_apply(role: str, using: str = "default") -> list[str]:
    statements = grants(role, using)
    with connections[using].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return statements


def role_exists(role: str, using: str = "default") -> bool:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        return cursor.fetchone() is not None


def exposures(role: str, using: str = "default") -> list[str]:
    """What `role` can do to the trail, read from the catalog: an empty list when it can only
    append events and read."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is None:
            return [f"role {role} does not exist"]
        if row[0]:
            return [f"{role} is a superuser: it can do anything, triggers off included"]
        found, owned = [], []
        schema, tables = _tables(using)
        partitions = [part.name for part in partitions_list(using)]  # reachable by name too
        for table in (*TRAIL, *partitions):
            if table not in tables and table not in partitions:
                continue
            qualified = f"{schema}.{table}"
            cursor.execute(
                "SELECT pg_get_userbyid(relowner), pg_has_role(%s, relowner, 'MEMBER')"
                " FROM pg_class WHERE oid = %s::regclass",
                [role, qualified],
            )
            owner, member = cursor.fetchone()
            if member:
                owned.append(table if owner == role else f"{table} (as a member of its owner {owner})")
                continue
            changing = CHANGING if table == EVENTS or table in partitions else ("INSERT", *CHANGING)
            cursor.execute(
                "SELECT array_agg(p ORDER BY p) FROM unnest(%s::text[]) p"
                " WHERE has_table_privilege(%s, %s, p)",
                [list(changing), role, qualified],
            )
            held = cursor.fetchone()[0]
            if held:
                found.append(f"{role} has {', '.join(held)} on {table}")
        if owned:
            found.insert(0, f"{role} owns {', '.join(owned)}: it can disable or drop their triggers")
        cursor.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", [role, schema])
        if cursor.fetchone()[0]:
            found.append(
                f"{role} can create objects in schema {schema} (functions and operators that "
                "other roles' queries may pick up by name)"
            )
    return found


def runtime_grants_after_migrate(sender, using, **kwargs) -> None:
    """post_migrate: a migration may have added a table; give the runtime role its privileges on
    it, when migrate ran as another role (the owner) and the runtime role exists."""
    connection = connections[using]
    role = settings.AUDITLOG_RUNTIME_ROLE
    if connection.vendor != "postgresql" or not role or not role_exists(role, using):
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        if cursor.fetchone()[0] != role:
            grants_apply(role, using)


MSG_MAINTENANCE_ONLY = (
    "{command} changes the trail's tables, which only the maintenance role may do, and this "
    "connection's role ({role}) may not: set DATABASE_MAINTENANCE_URL to the URL of the role that "
    "owns the tables (manage.py uses it for {command}; docs/roles.md). The database said: {error}"
)


def maintenance_only(command: str):
    """Decorate a command's handle(): a refusal for lack of privilege becomes a CommandError that
    says which role the command needs."""

    def decorator(handle):
        @functools.wraps(handle)
        def wrapper(*args, **kwargs):
            try:
                return handle(*args, **kwargs)
            except DatabaseError as exc:
                cause = exc.__cause__
                if getattr(cause, "sqlstate", None) != INSUFFICIENT_PRIVILEGE or not str(
                    cause.diag.message_primary
                ).startswith("permission denied"):
                    raise  # not a privilege the role lacks (the triggers' refusals share the code)
                raise CommandError(
                    MSG_MAINTENANCE_ONLY.format(
                        command=command,
                        role=connection.settings_dict["USER"] or "default",
                        error=str(exc).strip(),
                    )
                ) from None

        return wrapper

    return decorator
