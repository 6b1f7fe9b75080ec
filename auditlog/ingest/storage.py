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

from auditlog.db.partitions import partitions_ensure_range
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.events.definition import FIELDS
from auditlog.events.validation import EventInput
from auditlog.models import ActionLog, EventKey

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


# EventKey's columns, in an EventRows row's terms: its key's values, and where its key is.
KEY_COLUMNS = ("source_id", "idempotency_key", "event_uuid", "payload_hash", "received_at")
_KEY_VALUES = itemgetter(
    *(COLUMNS.index(name) for name in ("source_id", "idempotency_key", "uuid", "payload_hash", "received_at"))
)
_KEY_AT = COLUMNS.index("idempotency_key")
_RECEIVED_AT = COLUMNS.index("received_at")
_EVENTS, _KEYS = ActionLog._meta.db_table, EventKey._meta.db_table
_INSERT_SQL = f"INSERT INTO {_EVENTS} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
_KEYS_INSERT_SQL = f"INSERT INTO {_KEYS} ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join(['%s'] * 5)})"
_COPY_SQL = f"COPY {_EVENTS} ({', '.join(COLUMNS)}) FROM STDIN"
_KEYS_COPY_SQL = f"COPY {_KEYS} ({', '.join(KEY_COLUMNS)}) FROM STDIN"


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
    """Insert a batch of rows from EventRows (the caller owns the transaction): the keys of those
    that have one into EventKey, then the events.

    SQLite's executemany; on PostgreSQL, COPY, which costs the server a fraction of per-row
    INSERTs. A duplicate idempotency key fails the keys' statement with IntegrityError, which
    the batch service retries.
    """
    keys = [_KEY_VALUES(row) for row in rows if row[_KEY_AT] is not None]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with connection.wrap_database_errors:
                for sql, values in ((_KEYS_COPY_SQL, keys), (_COPY_SQL, rows)):
                    if values:
                        with cursor.copy(sql) as copy:
                            for row in values:
                                copy.write_row(row)
        else:
            if keys:
                cursor.executemany(_KEYS_INSERT_SQL, keys)
            cursor.executemany(_INSERT_SQL, rows)


def events_insert_new(rows: list[tuple]) -> set:
    """Insert rows from EventRows; return the uuids (as in the rows) stored.

    A row whose idempotency key this source already used (or that repeats a key among the
    rows) is skipped, not an error: its key's insert into EventKey is `ON CONFLICT DO NOTHING`,
    and only the rows whose keys went in (or that have none) are inserted. On PostgreSQL that is
    one statement (the keys' INSERT a data-modifying WITH query of the events' INSERT); on SQLite
    two, in one transaction. Any other violation fails it all.

    It runs the steps of Django's cursor().execute() that matter (the health check of a
    reused connection, connecting with errors wrapped, the refusal to run in a broken
    transaction, Django's exception types) without its wrapper objects and SQLite's per-call
    placeholder rewrite, a fifth of a lone INSERT's cost. Where queries are logged (DEBUG) or
    wrapped (connection.execute_wrapper), Django's cursor runs it instead, so they see it.
    """
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "sqlite" and any(row[_KEY_AT] is not None for row in rows):
        with transaction.atomic():
            taken = _execute(db, _sqlite_keys_sql(len(rows)), [v for row in rows for v in _KEY_VALUES(row)])
            new = {uuid for (uuid,) in taken}
            rows = [row for row in rows if row[_KEY_AT] is None or row[0] in new]
            return (
                {uuid for (uuid,) in _execute(db, _insert_new_sql(len(rows), "?"), _flat(rows))}
                if rows
                else set()
            )
    placeholder = "?" if db.vendor == "sqlite" else "%s"
    return {uuid for (uuid,) in _execute(db, _insert_new_sql(len(rows), placeholder), _flat(rows))}


def _flat(rows: list[tuple]) -> list:
    return [value for row in rows for value in row]


def _execute(db, sql: str, params: list) -> list[tuple]:
    if db.queries_logged or db.execute_wrappers:
        with db.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s") if db.vendor == "sqlite" else sql, params)
            return cursor.fetchall()
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
            return db.connection.execute(sql, params).fetchall()
        # Server-side binding (psycopg.Cursor; Django's own cursors bind client-side): the
        # values travel apart from the SQL, which psycopg need not quote into it, and the
        # statement can be prepared: psycopg prepares it once it has run
        # OPTIONS["prepare_threshold"] times on this connection with this row count
        # (DATABASE_PREPARED_STATEMENTS, config/settings.py); None prepares nothing.
        with psycopg.Cursor(db.connection) as cursor:
            return cursor.execute(sql, params).fetchall()


@functools.cache
def _insert_new_sql(count: int, placeholder: str) -> str:
    if placeholder == "?":  # SQLite: the keys went in first (_sqlite_keys_sql)
        values = ", ".join([f"({', '.join([placeholder] * len(COLUMNS))})"] * count)
        return f"INSERT INTO {_EVENTS} ({', '.join(COLUMNS)}) VALUES {values} RETURNING uuid"
    # PostgreSQL: the rows as a VALUES list (each value cast to its column's type: a VALUES list
    # takes no type from where its rows go), the keys' insert a WITH query whose RETURNING says
    # which keys went in, then the events with no key or with one of those.
    cast = [f"%s::{_db_type(name)}" for name in COLUMNS]
    values = ", ".join([f"({', '.join(cast)})"] * count)
    return (
        f"WITH v ({', '.join(COLUMNS)}) AS (VALUES {values}), "
        f"k AS (INSERT INTO {_KEYS} ({', '.join(KEY_COLUMNS)}) "
        f"SELECT source_id, idempotency_key, uuid, payload_hash, received_at FROM v "
        "WHERE idempotency_key IS NOT NULL ON CONFLICT DO NOTHING RETURNING event_uuid) "
        f"INSERT INTO {_EVENTS} ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM v "
        "WHERE idempotency_key IS NULL OR uuid IN (SELECT event_uuid FROM k) RETURNING uuid"
    )


@functools.cache
def _sqlite_keys_sql(count: int) -> str:
    values = ", ".join([f"({', '.join(['?'] * len(KEY_COLUMNS))})"] * count)
    return (
        f"INSERT INTO {_KEYS} ({', '.join(KEY_COLUMNS)}) SELECT * FROM (VALUES {values}) "
        "WHERE column2 IS NOT NULL ON CONFLICT DO NOTHING RETURNING event_uuid"
    )


def _db_type(name: str) -> str:
    field = ActionLog._meta.get_field(name)
    return (field.target_field if field.is_relation else field).db_type(connection)


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
    if rows and connection.vendor == "postgresql":
        received = [row[_RECEIVED_AT] for row in rows]
        partitions_ensure_range(min(received), max(received))
    with sqlite_writer_queue(), transaction.atomic():
        events_insert(rows)
