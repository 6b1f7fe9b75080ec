"""System checks for the connection setup (docs/connections.md) and the trail's protection
(docs/roles.md).

Configuration checks run with every `manage.py check`. The ones that ask the server (idle
timeout, max_connections, the triggers, what the runtime role may do) are tagged `database`:
they run with `check --database default`, with `migrate`, and in `manage.py auditlog_dbcheck`.
"""

import re
import runpy
from dataclasses import dataclass

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections
from django.utils import timezone

from auditlog.db.partitions import events_partitioned, partitions_list
from auditlog.db.roles import exposures, runtime_role
from auditlog.trail.append_only import guard_missing

SQLITE = "auditlog.db.sqlite3"  # Django's, creating the database file 0600
SQLITE_ENGINES = (SQLITE, "django.db.backends.sqlite3")
POSTGRESQL = "auditlog.db.postgresql"  # Django's, with a cheaper health check
POSTGRESQL_ENGINES = (POSTGRESQL, "django.db.backends.postgresql")
GUNICORN_CONF = settings.BASE_DIR / "config" / "gunicorn.conf.py"


def _obj(alias: str) -> str:
    return f"DATABASES[{alias!r}]"


def _pragma(init_command: str, name: str) -> str | None:
    match = re.search(rf"PRAGMA\s+{name}\s*=\s*([\w-]+)", init_command or "", re.IGNORECASE)
    return match.group(1) if match else None


def sqlite_busy_timeout_seconds(database: dict) -> float:
    """The effective busy timeout: a PRAGMA in init_command replaces OPTIONS["timeout"]."""
    pragma = _pragma(database.get("OPTIONS", {}).get("init_command", ""), "busy_timeout")
    if pragma is not None:
        return int(pragma) / 1000
    return float(database.get("OPTIONS", {}).get("timeout", 5.0))  # sqlite3.connect's default


def sqlite_not_wal(alias: str) -> Error:
    return Error(
        "SQLite is not in WAL mode: readers and the writer block each other.",
        hint='Add "PRAGMA journal_mode=WAL" to OPTIONS["init_command"].',
        obj=_obj(alias),
        id="auditlog.E001",
    )


def sqlite_problems(alias: str, database: dict) -> list:
    options = database.get("OPTIONS", {})
    problems = []
    if (_pragma(options.get("init_command", ""), "journal_mode") or "").lower() != "wal":
        problems.append(sqlite_not_wal(alias))
    if sqlite_busy_timeout_seconds(database) <= 0:
        problems.append(
            Error(
                "SQLite has no busy timeout: a writer that meets another fails at once with "
                "'database is locked'.",
                hint="Set SQLITE_BUSY_TIMEOUT to a few seconds (default 5).",
                obj=_obj(alias),
                id="auditlog.E002",
            )
        )
    if (options.get("transaction_mode") or "DEFERRED").upper() not in ("IMMEDIATE", "EXCLUSIVE"):
        problems.append(
            Error(
                "SQLite transactions are DEFERRED: one that reads and then writes fails at once "
                "with 'database is locked' instead of waiting for the lock.",
                hint='Set OPTIONS["transaction_mode"] = "IMMEDIATE".',
                obj=_obj(alias),
                id="auditlog.E003",
            )
        )
    if database.get("ATOMIC_REQUESTS"):
        problems.append(
            Error(
                "ATOMIC_REQUESTS on SQLite holds the single write lock for whole requests.",
                hint="Turn ATOMIC_REQUESTS off; the services open short transactions themselves.",
                obj=_obj(alias),
                id="auditlog.E004",
            )
        )
    return problems


def postgres_problems(alias: str, database: dict) -> list:
    pooled = bool(database.get("OPTIONS", {}).get("pool"))
    persistent = database.get("CONN_MAX_AGE", 0) != 0  # None means unlimited
    problems = []
    if persistent and not pooled and not database.get("CONN_HEALTH_CHECKS"):
        problems.append(
            Error(
                "Persistent PostgreSQL connections without health checks: after a database "
                "restart or idle timeout, each thread's first request fails on a dead connection.",
                hint="Set CONN_HEALTH_CHECKS=true (or CONN_MAX_AGE=0).",
                obj=_obj(alias),
                id="auditlog.E005",
            )
        )
    if pooled and persistent:
        problems.append(
            Error(
                "The psycopg pool together with CONN_MAX_AGE: Django refuses to connect.",
                hint="With DATABASE_POOL=true, CONN_MAX_AGE must be 0.",
                obj=_obj(alias),
                id="auditlog.E006",
            )
        )
    return problems


def timeout_problems(alias: str, *, statement: float, client: float) -> list:
    if statement and client <= statement:
        return [
            Warning(
                f"DATABASE_CLIENT_TIMEOUT ({client:g} s) is not above DATABASE_STATEMENT_TIMEOUT "
                f"({statement:g} s): a slow statement is abandoned by the client, which closes the "
                "connection, before the server cancels it and keeps the connection usable.",
                hint="Leave DATABASE_CLIENT_TIMEOUT unset (statement timeout + 1 s) or set it higher.",
                obj=_obj(alias),
                id="auditlog.W002",
            )
        ]
    return []


@register()
def check_connection_settings(app_configs, **kwargs) -> list:
    problems = []
    for alias, database in settings.DATABASES.items():
        if database["ENGINE"] in SQLITE_ENGINES:
            problems += sqlite_problems(alias, database)
        elif database["ENGINE"] in POSTGRESQL_ENGINES:
            problems += postgres_problems(alias, database)
            problems += timeout_problems(
                alias, statement=settings.DATABASE_STATEMENT_TIMEOUT, client=settings.DATABASE_CLIENT_TIMEOUT
            )
    return problems


# --- checks that ask the PostgreSQL server ----------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    """Database connections one deployment can open at once."""

    instances: int
    workers: int
    threads: int
    pool_max_size: int | None

    @property
    def connections(self) -> int:
        per_process = self.pool_max_size if self.pool_max_size is not None else self.threads
        return self.instances * self.workers * per_process


def capacity(database: dict) -> Capacity:
    gunicorn = runpy.run_path(str(GUNICORN_CONF))  # the same numbers gunicorn will use
    pool = database.get("OPTIONS", {}).get("pool")
    return Capacity(
        instances=settings.AUDITLOG_APP_INSTANCES,
        workers=gunicorn["workers"],
        threads=gunicorn["threads"],
        pool_max_size=(pool.get("max_size") or pool.get("min_size", 4)) if pool else None,
    )


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int
    reserved: int  # superuser_reserved_connections (+ reserved_connections on PostgreSQL 16+)
    idle_session_timeout_seconds: float  # 0: none

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved


def server_limits(alias: str) -> ServerLimits:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int"
            " + coalesce(current_setting('reserved_connections', true), '0')::int,"
            " coalesce(extract(epoch FROM current_setting('idle_session_timeout', true)::interval), 0)"
        )
        max_connections, reserved, idle = cursor.fetchone()
    return ServerLimits(max_connections, reserved, float(idle))


def server_problems(alias: str, database: dict, limits: ServerLimits, cap: Capacity) -> list:
    problems = []
    max_age = database.get("CONN_MAX_AGE", 0)
    idle = limits.idle_session_timeout_seconds
    if idle and (max_age is None or max_age >= idle) and not database.get("OPTIONS", {}).get("pool"):
        problems.append(
            Warning(
                f"CONN_MAX_AGE ({max_age}) is not below the server's idle_session_timeout "
                f"({idle:g} s): idle connections are cut by the server and replaced by health checks.",
                hint=f"Set CONN_MAX_AGE below {idle:g}.",
                obj=_obj(alias),
                id="auditlog.W001",
            )
        )
    if cap.connections > limits.available:
        problems.append(
            Error(
                f"This deployment can open {cap.connections} connections ({cap.instances} instance(s) x "
                f"{cap.workers} workers x {cap.pool_max_size or cap.threads} "
                f"{'pool slots' if cap.pool_max_size else 'threads'}), more than the server's "
                f"{limits.available} (max_connections {limits.max_connections} "
                f"minus {limits.reserved} reserved).",
                hint="Lower WEB_CONCURRENCY, GUNICORN_THREADS or DATABASE_POOL_MAX_SIZE, "
                "or raise max_connections.",
                obj=_obj(alias),
                id="auditlog.E007",
            )
        )
    return problems


def server_bounds(alias: str) -> tuple[str, str]:
    """statement_timeout and lock_timeout as the server applies them to this connection."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
        return cursor.fetchone()


def bounds_problems(alias: str) -> list:
    """Behind PgBouncer no startup parameter sets the bounds (settings.py): its connect_query must."""
    if server_bounds(alias)[0] != "0":
        return []
    return [
        Warning(
            "The server applies no statement_timeout to this connection: a stalled statement would "
            "hold a request until the client deadline.",
            hint="Behind PgBouncer (DATABASE_POOLER), set the bounds in its connect_query "
            "(deploy/pgbouncer.ini); otherwise check the role's and the database's settings.",
            obj=_obj(alias),
            id="auditlog.W004",
        )
    ]


@register(Tags.database)
def check_server_limits(app_configs, databases=None, **kwargs) -> list:
    problems = []
    for alias in databases or ():
        database = settings.DATABASES[alias]
        if database["ENGINE"] in POSTGRESQL_ENGINES:
            problems += server_problems(alias, database, server_limits(alias), capacity(database))
            problems += bounds_problems(alias)
    return problems


# --- the trail's protection, read from the server (docs/roles.md) ------------------------------


def guard_problems(alias: str) -> list:
    missing = guard_missing(alias)
    if not missing:
        return []
    return [
        Error(
            f"Append-only triggers missing or disabled: {', '.join(missing)}. Events or seals can be "
            "changed or deleted by any role that can write the table.",
            hint="Find who removed them (a migration rebuilding a SQLite table drops its triggers; on "
            "PostgreSQL only the tables' owner can disable or drop one), then recreate them: "
            "`manage.py migrate auditlog 0005` and `manage.py migrate`.",
            obj=_obj(alias),
            id="auditlog.E008",
        )
    ]


def runtime_role_problems(alias: str) -> list:
    role = runtime_role(alias)
    found = exposures(role, alias)
    if not found:
        return []
    return [
        Warning(
            f"The runtime role {role} can change or remove the trail: {'; '.join(found)}.",
            hint="Run the service as a role that does not own the tables, with the privileges "
            "`manage.py auditlog_roles --runtime ROLE` prints; migrate, seal and purge with "
            "DATABASE_MAINTENANCE_URL (docs/roles.md).",
            obj=_obj(alias),
            id="auditlog.W003",
        )
    ]


@register(Tags.database)
def check_trail_protection(app_configs, databases=None, **kwargs) -> list:
    problems = []
    for alias in databases or ():
        problems += guard_problems(alias)
        if settings.DATABASES[alias]["ENGINE"] in POSTGRESQL_ENGINES:
            problems += runtime_role_problems(alias)
    return problems


def partition_problems(alias: str) -> list:
    if not events_partitioned(alias):
        return []
    now = timezone.now()
    ahead = sum(1 for part in partitions_list(alias) if part.lower > now)
    wanted = settings.AUDITLOG_PARTITIONS_AHEAD
    if ahead >= wanted:
        return []
    return [
        Warning(
            f"Only {ahead} partition(s) of the events table exist ahead of the current period; "
            f"AUDITLOG_PARTITIONS_AHEAD wants {wanted}.",
            hint="Run `manage.py auditlog_partitions` (cron it daily, or keep `auditlog_seal --follow` "
            "running, which runs it hourly). Ingest never fails for a missing partition (it makes its "
            "own), but making one then costs the first request of the period a moment.",
            obj=_obj(alias),
            id="auditlog.W005",
        )
    ]


@register(Tags.database)
def check_partitions_ahead(app_configs, databases=None, **kwargs) -> list:
    problems = []
    for alias in databases or ():
        problems += partition_problems(alias)
    return problems


@register()
def check_receipt_key(app_configs, **kwargs) -> list:
    """A receipt key that cannot be read would fail every request that asks for a receipt."""
    from auditlog.trail.note import NoteError
    from auditlog.trail.receipt import receipt_verifiers

    try:
        receipt_verifiers()  # the signer key, and the verifier keys
    except (OSError, NoteError) as exc:
        return [
            Error(
                f"The receipt key cannot be used: {exc}",
                hint="AUDITLOG_RECEIPT_KEY (or the file AUDITLOG_RECEIPT_KEY_FILE) holds a signer key "
                "`manage.py auditlog_keygen` wrote; AUDITLOG_RECEIPT_VERIFIER_KEYS verifier keys.",
                id="auditlog.E009",
            )
        ]
    return []
