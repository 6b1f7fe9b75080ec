"""Events partitioned by time on PostgreSQL: declarative range partitions of received_at, one per
AUDITLOG_PARTITION_INTERVAL (a month by default: docs/scale.md says why), made ahead of time.

One SQL function, auditlog_partition_ensure(at), makes the partition that holds `at` when none
does, fitted between its neighbours (so a changed interval never overlaps or leaves a gap), and
answers its name and bounds. It is SECURITY DEFINER, owned by the table's owner: `migrate`,
`auditlog_partitions` (cron) and `auditlog_seal --follow` call it for the periods ahead, and
ingest calls it when an event's received_at lies past every partition this process has seen,
so no event ever fails for want of a partition, even when nothing made them ahead.

A new partition is created as a table and then attached: ATTACH PARTITION takes SHARE UPDATE
EXCLUSIVE on the events table, which neither inserts nor reads wait for (CREATE TABLE ...
PARTITION OF takes ACCESS EXCLUSIVE, which a long export would hold up, and ingest behind it).
There is no default partition: DETACH PARTITION ... CONCURRENTLY, which retention uses, is not
allowed beside one. SQLite keeps one table; every function here is a no-op there.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from auditlog.models import ActionLog

EVENTS = ActionLog._meta.db_table
INTERVALS = ("day", "week", "month")
FUNCTION = "auditlog_partition_ensure"
# A partition's bounds, read from the catalog (c: its pg_class row): b[1] and b[2], as text.
_BOUNDS = "regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)')"

_ENSURE = """
CREATE OR REPLACE FUNCTION {schema}.{function}(at timestamptz,
    OUT name text, OUT lower_bound timestamptz, OUT upper_bound timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
BEGIN
    lower_bound := date_trunc('{unit}', at, 'UTC');
    upper_bound := lower_bound + interval '1 {unit}';
    FOR part IN
        SELECT c.relname::text AS relname, b[1]::timestamptz AS lo, b[2]::timestamptz AS hi
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL {bounds} AS b
        WHERE i.inhparent = '{schema}.{table}'::regclass
    LOOP
        IF part.lo <= at AND at < part.hi THEN
            name := part.relname; lower_bound := part.lo; upper_bound := part.hi;
            RETURN;
        END IF;
        -- fitted between the neighbours: never overlapping them, never leaving a gap
        IF part.hi <= at AND part.hi > lower_bound THEN lower_bound := part.hi; END IF;
        IF part.lo > at AND part.lo < upper_bound THEN upper_bound := part.lo; END IF;
    END LOOP;
    name := '{table}_p' || to_char(lower_bound AT TIME ZONE 'UTC', 'YYYYMMDD');
    BEGIN
        EXECUTE format('CREATE TABLE {schema}.%I (LIKE {schema}.{table} INCLUDING DEFAULTS'
            ' INCLUDING CONSTRAINTS)', name);
        EXECUTE format('ALTER TABLE {schema}.{table} ATTACH PARTITION {schema}.%I'
            ' FOR VALUES FROM (%L) TO (%L)', name, lower_bound, upper_bound);
    EXCEPTION WHEN duplicate_table THEN
        NULL;  -- another session made it at the same moment: the same name, the same bounds
    END;
END $$
"""


# The last partition of year 9999 ends in year 10000, past what a Python datetime holds.
_UPPER = "least({}, '9999-12-31 23:59:59.999999+00')"


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime
    upper: datetime
    estimated_rows: int | None = None  # as the statistics have it (partitions_list only)


def partitioned() -> bool:
    return connection.vendor == "postgresql"


def function_install(db) -> None:
    """(Re)create auditlog_partition_ensure for AUDITLOG_PARTITION_INTERVAL, owned by the role
    running it (the events table's owner: migrate and the maintenance commands)."""
    with db.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        schema = cursor.fetchone()[0]
        unit = settings.AUDITLOG_PARTITION_INTERVAL
        sql = _ENSURE.format(schema=schema, function=FUNCTION, table=EVENTS, unit=unit, bounds=_BOUNDS)
        cursor.execute(sql)


def events_partitioned(using: str = "default") -> bool:
    """Whether the events table is partitioned (PostgreSQL from migration 0010 on)."""
    db = connections[using]
    if db.vendor != "postgresql":
        return False
    with db.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", [EVENTS])
        row = cursor.fetchone()
    return bool(row and row[0])


def partitions_after_migrate(sender, using, **kwargs) -> None:
    """post_migrate: the ensure function for the interval configured now, and the partitions
    ahead, so that a new period never waits for cron."""
    if events_partitioned(using):
        function_install(connections[using])
        partitions_ensure_ahead(timezone.now(), settings.AUDITLOG_PARTITIONS_AHEAD, using)


def partition_ensure(at: datetime, using: str = "default") -> Partition:
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT name, lower_bound, {_UPPER.format('upper_bound')} FROM {FUNCTION}(%s)", [at])
        return Partition(*cursor.fetchone())


def partitions_ensure_range(first: datetime, last: datetime) -> None:
    """Partitions for every time from first to last (generated data spread over a past range)."""
    if partitioned():
        at = first
        while at <= last:
            upper = partition_ensure(at).upper
            if upper <= at:  # the last partition of year 9999 (_UPPER)
                break
            at = upper


def partitions_ensure_ahead(now: datetime, ahead: int, using: str = "default") -> list[Partition]:
    """The partitions of now's period and of the `ahead` periods after it, made where missing."""
    made = []
    at = now
    for _ in range(ahead + 1):
        part = partition_ensure(at, using)
        made.append(part)
        at = part.upper
    return made


def partitions_list(using: str = "default") -> list[Partition]:
    """Every partition of the events table, oldest first, with its estimated rows (none on
    SQLite)."""
    if connections[using].vendor != "postgresql":
        return []
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT c.relname, b[1]::timestamptz, {_UPPER.format('b[2]::timestamptz')},"
            " greatest(c.reltuples, 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            f" CROSS JOIN LATERAL {_BOUNDS} AS b WHERE i.inhparent = to_regclass(%s) ORDER BY 2",
            [EVENTS],
        )
        return [Partition(*row) for row in cursor.fetchall()]


class IngestPartitions:
    """Before an insert, the event's partition must exist. This process remembers the newest
    partition it has seen; an event received past it (a new period, or a fresh process) asks
    auditlog_partition_ensure once, which answers at once when the partition was made ahead and
    makes it otherwise. So the cost per event is one comparison."""

    def __init__(self):
        self._known: tuple[datetime, datetime] | None = None

    def ready(self, received_at: datetime) -> None:
        known = self._known
        if known is not None and known[0] <= received_at < known[1]:
            return
        if not partitioned():
            return
        # No lock: a fresh process's first requests may each ask at once, each on the connection
        # it already holds (the function is safe to run concurrently). A lock here would make
        # them wait holding those connections while the asker waits for one (a small pool).
        part = partition_ensure(received_at)
        known = self._known
        if known is None or part.upper >= known[1]:
            self._known = (part.lower, part.upper)

    def forget(self) -> None:
        self._known = None


ingest_partitions = IngestPartitions()
