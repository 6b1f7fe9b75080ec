"""Writing event rows without the ORM's per-row overhead.

`EventRows` and `events_insert` are the API's path: one INSERT per event (COPY or executemany
for a batch), values adapted by Django's own backend adapters, as Model.save() stores them.
`events_bulk_insert` is for generated data (demo, benchmarks): SQLite executemany, PostgreSQL
COPY, no idempotency handling and no validation.
"""

import json
from datetime import datetime
from uuid import UUID

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from auditlog.models import ActionLog

COLUMNS = (
    "uuid",
    "occurred_at",
    "received_at",
    "actor_id",
    "actor_type",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "target_name",
    "outcome",
    "ip_address",
    "user_agent",
    "metadata",
    "source_id",
    "idempotency_key",
    "payload_hash",
)
METADATA = COLUMNS.index("metadata")


def _insert_sql() -> str:
    table = ActionLog._meta.db_table
    return f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


_INSERT_SQL = _insert_sql()
_INSERT_SQL_QMARK = _INSERT_SQL.replace("%s", "?")  # sqlite3's own placeholder style


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

    def row(self, event, event_uuid: UUID) -> tuple:
        return (
            event_uuid if self._native_uuid else event_uuid.hex,
            self._received_at if event.occurred_at is None else self._adapt(event.occurred_at),
            self._received_at,
            event.actor_id,
            event.actor_type,
            event.actor_name,
            event.action,
            event.target_type,
            event.target_id,
            event.target_name,
            event.outcome,
            event.ip_address,  # a str: psycopg sends it untyped and PostgreSQL casts it to inet
            event.user_agent,
            event.metadata_json,  # likewise to jsonb; SQLite stores the text as is
            self._source_id,
            event.idempotency_key,
            event.payload_hash,
        )


def events_insert(rows: list[tuple]) -> None:
    """Insert rows from EventRows (the caller owns the transaction).

    One row: one prepared INSERT. Many: SQLite's executemany; on PostgreSQL, COPY, which costs
    the server a fraction of per-row INSERTs. A duplicate idempotency key still fails the whole
    statement with IntegrityError, which the batch service retries.
    """
    if len(rows) == 1:
        _insert_one(rows[0])
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with connection.wrap_database_errors, cursor.copy(_copy_sql()) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(_INSERT_SQL, rows)


def _insert_one(row: tuple) -> None:
    """One INSERT with the steps of Django's cursor().execute() that matter, without its wrapper
    objects and SQLite's per-call placeholder rewrite (a fifth of the statement's own cost).

    Kept: the health check of a reused connection, connecting with errors wrapped, the refusal
    to run in a broken transaction, Django's exception types. Where queries are logged (DEBUG)
    or wrapped (connection.execute_wrapper), the normal cursor runs instead, so they see it.
    """
    db = connections[DEFAULT_DB_ALIAS]
    if db.queries_logged or db.execute_wrappers:
        with db.cursor() as cursor:
            cursor.execute(_INSERT_SQL, row)
        return
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_no_broken_transaction()
    with db.wrap_database_errors:
        if db.vendor == "sqlite":
            db.connection.execute(_INSERT_SQL_QMARK, row)
        else:
            # Server-side binding, prepared once per connection: PostgreSQL skips parsing and
            # planning the same INSERT on every request. (Django's own cursors bind client-side.)
            with psycopg.Cursor(db.connection) as cursor:
                cursor.execute(_INSERT_SQL, row, prepare=True)


def _copy_sql() -> str:
    return f"COPY {ActionLog._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"


def events_bulk_insert(rows: list[tuple]) -> None:
    """Insert rows (tuples in COLUMNS order, metadata as a dict) in one transaction."""
    events_bulk_insert_prepared(rows_prepare(rows))


def rows_prepare(rows: list[tuple]) -> list[tuple]:
    """Adapt rows with Django's backend adapters, as EventRows does. Opens no connection
    (the adapters only need the backend), so it can run in a forked generator process."""
    ops, native_uuid = connection.ops, connection.features.has_native_uuid_field
    return [
        (
            row[0] if native_uuid else row[0].hex,
            ops.adapt_datetimefield_value(row[1]),
            ops.adapt_datetimefield_value(row[2]),
            *row[3:METADATA],
            json.dumps(row[METADATA], separators=(",", ":")),
            *row[METADATA + 1 :],
        )
        for row in rows
    ]


def events_bulk_insert_prepared(rows: list[tuple]) -> None:
    """Insert rows_prepare() output in one transaction."""
    with transaction.atomic():
        events_insert(rows)
