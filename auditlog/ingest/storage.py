"""Writing event rows without the ORM's per-row overhead.

`EventRows`, `events_insert_new` (single events, grouped by auditlog.ingest.group_commit) and
`events_insert` (batches: COPY or executemany) are the API's path, with values adapted by
Django's own backend adapters, as Model.save() stores them.
`rows_prepare` and `events_bulk_insert_prepared` are for generated data (demo, benchmarks):
the same inserts, with no idempotency handling and no validation.
"""

import functools
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter, itemgetter
from uuid import UUID

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.events.definition import FIELDS
from auditlog.events.validation import EventInput
from auditlog.models import ActionLog

# EventRows takes these from the validated event as they are: every column EventInput holds
# but occurred_at (when received, if not given) and metadata (its canonical JSON, below).
_AS_VALIDATED = tuple(
    name for name in EventInput._fields if name in FIELDS and name not in ("occurred_at", "metadata")
)
# The insert's columns: the uuid first (auditlog.ingest.group_commit reads a row's at row[0]),
# then those, then the ones EventRows adapts or assigns.
COLUMNS = ("uuid", *_AS_VALIDATED, "metadata", "occurred_at", "received_at", "source_id")
# The values of _AS_VALIDATED and metadata from an EventInput, in one call (1,000 rows a batch).
# ip_address stays a str: psycopg sends it untyped and PostgreSQL casts it to inet; metadata's
# text likewise to jsonb, and SQLite stores the text as is.
_EVENT_VALUES = itemgetter(*(EventInput._fields.index(name) for name in (*_AS_VALIDATED, "metadata_json")))


def _insert_sql() -> str:
    table = ActionLog._meta.db_table
    return f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


_INSERT_SQL = _insert_sql()


class EventRows:
    """Rows of validated events (EventInput) for one request, adapted for this thread's database.

    The backend's adapters are looked up once and the request's received_at is adapted once,
    not per event: on a batch of 1,000 that per-event work was a tenth of the request.
    """

    __slots__ = ("_adapt", "_native_uuid", "_received_at", "_source_id")

    def __init__(self, *, received_at: datetime, source_id: int):
        db = connections[DEFAULT_DB_ALIAS]  # the thread's own wrapper: one lookup, not one per use
        self._adapt = db.ops.adapt_datetimefield_value
        self._native_uuid = db.features.has_native_uuid_field
        self._received_at = self._adapt(received_at)
        self._source_id = source_id

    def row(self, event: EventInput, event_uuid: UUID) -> tuple:
        """The event's values in COLUMNS' order."""
        occurred_at = event.occurred_at
        return (
            event_uuid if self._native_uuid else event_uuid.hex,
            *_EVENT_VALUES(event),
            self._received_at if occurred_at is None else self._adapt(occurred_at),
            self._received_at,
            self._source_id,
        )


def events_insert(rows: list[tuple]) -> None:
    """Insert a batch of rows from EventRows (the caller owns the transaction).

    SQLite's executemany; on PostgreSQL, COPY, which costs the server a fraction of per-row
    INSERTs. A duplicate idempotency key fails the whole statement with IntegrityError, which
    the batch service retries.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with connection.wrap_database_errors, cursor.copy(_copy_sql()) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(_INSERT_SQL, rows)


def events_insert_new(rows: list[tuple]) -> set:
    """Insert rows from EventRows in one statement; return the uuids (as in the rows) stored.

    A row whose idempotency key this source already used (or that repeats a key among the
    rows) is skipped, not an error: `INSERT ... ON CONFLICT (source_id, idempotency_key)
    DO NOTHING RETURNING uuid`. Any other violation fails the statement.

    It runs the steps of Django's cursor().execute() that matter (the health check of a
    reused connection, connecting with errors wrapped, the refusal to run in a broken
    transaction, Django's exception types) without its wrapper objects and SQLite's per-call
    placeholder rewrite, a fifth of a lone INSERT's cost. Where queries are logged (DEBUG) or
    wrapped (connection.execute_wrapper), Django's cursor runs it instead, so they see it.
    """
    params = [value for row in rows for value in row]
    db = connections[DEFAULT_DB_ALIAS]
    if db.queries_logged or db.execute_wrappers:
        with db.cursor() as cursor:
            cursor.execute(_insert_new_sql(len(rows), "%s"), params)
            return {uuid for (uuid,) in cursor.fetchall()}
    # Each step below is one Django's cursor().execute() takes, for the same reason:
    # CONN_HEALTH_CHECKS: a reused connection the server dropped is replaced, not used.
    db.close_if_health_check_failed()
    # Connecting (or reconnecting) with connection errors raised as Django's types.
    db.ensure_connection()
    # After a failed statement in an atomic block, nothing more may run in it (TransactionManagementError).
    db.validate_no_broken_transaction()
    # Driver errors become django.db's (IntegrityError, OperationalError...), which the
    # callers, the request guard and the error middleware act on; it also marks a lost
    # connection unusable, so Django closes it after the request.
    with db.wrap_database_errors:
        if db.vendor == "sqlite":
            # sqlite3's own "?" style: Django's SQLite cursor would rewrite every "%s" per call.
            stored = db.connection.execute(_insert_new_sql(len(rows), "?"), params).fetchall()
        else:
            # Server-side binding (psycopg.Cursor; Django's own cursors bind client-side): the
            # values travel apart from the SQL, which psycopg need not quote into it, and the
            # statement can be prepared: psycopg prepares it once it has run
            # OPTIONS["prepare_threshold"] times on this connection with this row count
            # (DATABASE_PREPARED_STATEMENTS, config/settings.py); None prepares nothing.
            with psycopg.Cursor(db.connection) as cursor:
                stored = cursor.execute(_insert_new_sql(len(rows), "%s"), params).fetchall()
    return {uuid for (uuid,) in stored}


@functools.cache
def _insert_new_sql(count: int, placeholder: str) -> str:
    table = ActionLog._meta.db_table
    values = ", ".join([f"({', '.join([placeholder] * len(COLUMNS))})"] * count)
    # The conflict target names the partial unique index on (source, idempotency_key).
    return (
        f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES {values} "
        "ON CONFLICT (source_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
        "RETURNING uuid"
    )


def _copy_sql() -> str:
    return f"COPY {ActionLog._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"


def rows_prepare(rows: list[tuple]) -> list[tuple]:
    """Adapt rows of COLUMNS (the uuid a UUID, datetimes as datetimes, metadata as its canonical
    JSON, as EventRows has it) with Django's backend adapters, as EventRows does. Opens no
    connection (the adapters only need the backend), so it can run in a forked generator
    process."""
    adapters: dict[type, Callable] = {datetime: connection.ops.adapt_datetimefield_value}
    if not connection.features.has_native_uuid_field:
        adapters[UUID] = attrgetter("hex")
    types = [FIELDS[name].type for name in COLUMNS]
    adapted = [(index, adapters[kind]) for index, kind in enumerate(types) if kind in adapters]
    prepared = []
    for row in rows:
        values = list(row)
        for index, adapt in adapted:
            values[index] = adapt(values[index])
        prepared.append(tuple(values))
    return prepared


def events_bulk_insert_prepared(rows: list[tuple]) -> None:
    """Insert rows_prepare() output in one transaction."""
    with sqlite_writer_queue(), transaction.atomic():
        events_insert(rows)
