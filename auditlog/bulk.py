"""Writing event rows without the ORM's per-row overhead.

`events_insert` is the API's path: one prepared INSERT (executemany for a batch) with values
adapted by Django's own backend adapters, exactly as Model.save() would store them.
`events_bulk_insert` is for generated data (demo, benchmarks): SQLite executemany, PostgreSQL
COPY, no idempotency handling and no validation.
"""

import json

from django.db import connection, transaction

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


def event_params(event, *, event_uuid, received_at, source_id: int) -> tuple:
    """The row of one validated event (EventInput), adapted for this connection's database."""
    ops = connection.ops
    return (
        event_uuid if connection.features.has_native_uuid_field else event_uuid.hex,
        ops.adapt_datetimefield_value(event.occurred_at or received_at),
        ops.adapt_datetimefield_value(received_at),
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
        source_id,
        event.idempotency_key,
        event.payload_hash,
    )


def events_insert(rows: list[tuple]) -> None:
    """Insert rows from event_params (the caller owns the transaction).

    One row: one prepared INSERT. Many: SQLite's executemany; on PostgreSQL, COPY, which costs
    the server a fraction of per-row INSERTs. A duplicate idempotency key still fails the whole
    statement with IntegrityError, which the batch service retries.
    """
    with connection.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(_insert_sql(), rows[0])
        elif connection.vendor == "postgresql":
            with connection.wrap_database_errors, cursor.copy(_copy_sql()) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(_insert_sql(), rows)


def _copy_sql() -> str:
    return f"COPY {ActionLog._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"


def events_bulk_insert(rows: list[tuple]) -> None:
    """Insert rows (tuples in COLUMNS order, metadata as a dict) in one transaction."""
    events_bulk_insert_prepared(rows_prepare(rows))


def rows_prepare(rows: list[tuple]) -> list[tuple]:
    """Adapt rows with Django's backend adapters, as event_params does. Opens no connection
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
