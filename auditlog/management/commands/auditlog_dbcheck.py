from django.conf import settings
from django.core.checks import ERROR, Warning
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils import timezone

from auditlog import checks
from auditlog.db.partitions import events_partitioned, partitions_list
from auditlog.db.replica import REPLICA, replica_health, replica_status
from auditlog.db.roles import runtime_role
from auditlog.trail.append_only import GUARDED_TABLES, POSTGRESQL_TRIGGERS, SQLITE_TRIGGERS, guard_missing

OK = "ok"


class Command(BaseCommand):
    # This command reports the checks itself, as a table; failing before it would hide it.
    requires_system_checks = []
    help = (
        "Print the effective database connection setup, one line per setting with a verdict, "
        "and the problems found (checks auditlog.E001-E009, W001-W004, W010): the connection setup, the "
        "append-only triggers, and on PostgreSQL what the runtime role could do to the trail, read "
        "from the catalog. Exits non-zero on errors."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--database", default="default", help="The database alias to check (default: default)."
        )
        parser.add_argument(
            "--fail-on-warning",
            action="store_true",
            help="Exit non-zero on warnings too, not only on errors.",
        )

    def handle(self, *args, database, fail_on_warning, **options):
        if database not in settings.DATABASES:
            raise CommandError(f"No database alias {database!r}; known: {', '.join(settings.DATABASES)}.")
        config = settings.DATABASES[database]
        try:
            rows, problems = self._inspect(database, config)
        except Exception as exc:  # the server itself is part of what is checked
            raise CommandError(f"Cannot reach the database {database!r}: {exc}") from exc
        fired = {problem.id: problem for problem in problems}
        label_width = max(len(label) for label, _, _ in rows)
        value_width = max(len(str(value)) for _, value, _ in rows)
        self.stdout.write(f"{'setting'.ljust(label_width)}  {'value'.ljust(value_width)}  verdict")
        for label, value, check_id in rows:
            problem = fired.get(check_id)
            verdict = (
                OK if problem is None else f"{'ERROR' if problem.level >= ERROR else 'WARNING'} {check_id}"
            )
            self.stdout.write(f"{label.ljust(label_width)}  {str(value).ljust(value_width)}  {verdict}")
        for problem in problems:
            self.stdout.write(f"\n{problem.id}: {problem.msg}\n  fix: {problem.hint}")
        failing = [p for p in problems if p.level >= ERROR or fail_on_warning]
        if failing:
            raise CommandError(f"{len(failing)} problem(s): {', '.join(p.id for p in failing)}")
        if problems:
            self.stdout.write(
                self.style.WARNING(f"\n{len(problems)} warning(s); --fail-on-warning makes them fail.")
            )
        else:
            self.stdout.write(self.style.SUCCESS("\nNo problems found."))

    def _inspect(self, alias, config):
        if config["ENGINE"] in checks.SQLITE_ENGINES:
            return self._sqlite(alias, config)
        if config["ENGINE"] in checks.POSTGRESQL_ENGINES:
            return self._postgres(alias, config)
        raise CommandError(f"Unsupported engine {config['ENGINE']}.")

    def _sqlite(self, alias, config):
        with connections[alias].cursor() as cursor:
            pragma = {
                name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout")
            }
        cap = checks.capacity(config)
        rows = [
            ("engine", f"SQLite {config['NAME']}", None),
            ("journal_mode", pragma["journal_mode"], "auditlog.E001"),
            ("synchronous", {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[pragma["synchronous"]], None),
            ("busy_timeout", f"{pragma['busy_timeout']} ms", "auditlog.E002"),
            ("transaction_mode", connections[alias].transaction_mode or "DEFERRED", "auditlog.E003"),
            ("ATOMIC_REQUESTS", config.get("ATOMIC_REQUESTS"), "auditlog.E004"),
            ("CONN_MAX_AGE", config.get("CONN_MAX_AGE"), None),
            ("gunicorn workers x threads", f"{cap.workers} x {cap.threads}", None),
            self._guard_row(alias),
        ]
        problems = checks.sqlite_problems(alias, config) + checks.guard_problems(alias)
        if pragma["journal_mode"] != "wal" and not any(p.id == "auditlog.E001" for p in problems):
            problems.append(checks.sqlite_not_wal(alias))  # configured, yet the file is not in WAL
        return rows, problems

    def _postgres(self, alias, config):
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version'), current_user")
            version, current_user = cursor.fetchone()
        limits = checks.server_limits(alias)
        cap = checks.capacity(config)
        pool = config.get("OPTIONS", {}).get("pool")
        idle = limits.idle_session_timeout_seconds
        rows = [
            (
                "engine",
                f"PostgreSQL {version.split()[0]} at {config['HOST'] or 'socket'}/{config['NAME']}",
                None,
            ),
            ("CONN_MAX_AGE", config.get("CONN_MAX_AGE"), "auditlog.E005"),
            ("CONN_HEALTH_CHECKS", config.get("CONN_HEALTH_CHECKS"), "auditlog.E005"),
            (
                "pool",
                f"max {pool.get('max_size')}, timeout {pool.get('timeout')} s" if pool else "off",
                "auditlog.E006",
            ),
            ("server idle_session_timeout", f"{idle:g} s" if idle else "none", "auditlog.W001"),
            ("server max_connections", f"{limits.max_connections} ({limits.reserved} reserved)", None),
            ("connections this deployment opens", cap.connections, "auditlog.E007"),
            ("connected as", current_user, None),
            self._pooler_row(alias),
            ("runtime role", runtime_role(alias), "auditlog.W003"),
            self._guard_row(alias),
            self._partitions_row(alias),
        ]
        problems = (
            checks.partition_problems(alias)
            + checks.postgres_problems(alias, config)
            + checks.server_problems(alias, config, limits, cap)
            + checks.guard_problems(alias)
            + checks.runtime_role_problems(alias)
            + checks.bounds_problems(alias)
        )
        if alias != REPLICA and REPLICA in settings.DATABASES:
            row, problem = self._replica_row()
            rows.append(row)
            problems += problem
        return rows, problems

    def _replica_row(self):
        """Where the admin, the API's GETs and the exports read (auditlog.db.replica), and how far
        behind the replica is; one not fit for reads is a warning: the primary serves them."""
        replica = settings.DATABASES[REPLICA]
        status = replica_status()
        row = (
            "read replica",
            f"{replica['HOST']}:{replica['PORT']}/{replica['NAME']}: {status}",
            "auditlog.W010",
        )
        if replica_health.usable():
            return row, []
        problem = Warning(
            f"The read replica is not used: {status}.",
            hint="The primary serves every read meanwhile; see docs/replicas.md (Operations).",
            id="auditlog.W010",
        )
        return row, [problem]

    def _pooler_row(self, alias):
        """Which way the connection goes, and the server-side bounds it ends up with: set by a
        startup parameter directly, by PgBouncer's connect_query behind it."""
        statement, lock = checks.server_bounds(alias)
        way = "direct"
        if settings.DATABASE_POOLER == "pgbouncer-transaction":
            way = "PgBouncer in transaction mode (no prepared statements, no server-side cursors)"
        return (
            "way to the server",
            f"{way}; statement_timeout {statement}, lock_timeout {lock}",
            "auditlog.W004",
        )

    def _partitions_row(self, alias):
        """The events' partitions (docs/scale.md): how many, their interval, how many ahead."""
        if not events_partitioned(alias):
            return ("events partitions", "none (not migrated yet)", "auditlog.W005")
        parts = partitions_list(alias)
        ahead = sum(1 for part in parts if part.lower > timezone.now())
        return (
            "events partitions",
            f"{len(parts)} by {settings.AUDITLOG_PARTITION_INTERVAL} of received_at, {ahead} ahead "
            f"(want {settings.AUDITLOG_PARTITIONS_AHEAD})",
            "auditlog.W005",
        )

    def _guard_row(self, alias):
        missing = guard_missing(alias)
        total = (
            len(GUARDED_TABLES) * len(POSTGRESQL_TRIGGERS)
            if connections[alias].vendor == "postgresql"
            else len(SQLITE_TRIGGERS)
        )
        value = "not migrated yet" if missing is None else f"{total - len(missing)} of {total} in place"
        return ("append-only triggers", value, "auditlog.E008")
