"""Idempotency keys move to their own table (EventKey), and on PostgreSQL the events table becomes
partitioned by received_at (auditlog.db.partitions).

A partitioned table's unique constraints must include its partition key, so (source,
idempotency_key) cannot stay unique on the events: EventKey holds it, on both databases (one
rule, one code path), filled here from the events that have a key.

PostgreSQL: the table is rebuilt as a partitioned one with the same columns, defaults, checks,
identity (continuing from the same number), indexes, foreign key, append-only triggers and
grants; its primary key becomes (id, received_at) and the uuid's unique constraint a plain index
(uuid7s do not collide; the API looks events up by it). The rows are copied into partitions made
for their months, and the partitions ahead are made. Django's model state keeps `id` as the
primary key and `uuid` unique, which is how the ORM uses them. Reversible: the reverse rebuilds
the plain table.
"""

from django.db import migrations, models

from auditlog.db.partitions import FUNCTION, function_install
from auditlog.db.writer_queue import sqlite_writer_queue

TABLE = "auditlog_actionlog"
OLD = "auditlog_actionlog_rebuilt"
TRIGGERS = [
    f"CREATE TRIGGER auditlog_append_only BEFORE UPDATE OR DELETE ON {TABLE}"
    " FOR EACH ROW EXECUTE FUNCTION auditlog_append_only()",
    f"CREATE TRIGGER auditlog_no_truncate BEFORE TRUNCATE ON {TABLE}"
    " FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only()",
]


def keys_fill(apps, schema_editor):
    with sqlite_writer_queue():  # the service may be running: SQLite's writers take turns
        schema_editor.execute(
            "INSERT INTO auditlog_eventkey (source_id, idempotency_key, event_uuid, payload_hash, received_at)"
            f" SELECT source_id, idempotency_key, uuid, payload_hash, received_at FROM {TABLE}"
            " WHERE idempotency_key IS NOT NULL"
        )


def _rows(schema_editor, sql, params=None):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _rebuild(apps, schema_editor, *, partitioned: bool):
    """Rebuild the events table as a partitioned one, or back as a plain one."""
    if schema_editor.connection.vendor != "postgresql":
        return
    execute = schema_editor.execute
    model = apps.get_model("auditlog", "ActionLog")
    # Out of the way: the table, its sequence, and its indexes (index names are schema-wide).
    sequence = _rows(schema_editor, "SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])[0][0]
    next_id = _rows(schema_editor, f"SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM {sequence}")
    indexes = _rows(
        schema_editor,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
        [TABLE],
    )
    grants = _rows(
        schema_editor,
        "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants"
        " WHERE table_schema = current_schema() AND table_name = %s"
        " AND grantee <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass)"
        " GROUP BY grantee",
        [TABLE, TABLE],
    )
    foreign_keys = _rows(
        schema_editor,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'f'",
        [TABLE],
    )
    execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
    for (index,) in indexes:
        execute(f"ALTER INDEX {index} RENAME TO {index[:50]}_rebuilt")
    execute(f"DROP TRIGGER auditlog_append_only ON {OLD}")
    execute(f"DROP TRIGGER auditlog_no_truncate ON {OLD}")

    like = f"LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING STORAGE"
    if partitioned:
        execute(f"CREATE TABLE {TABLE} ({like}) PARTITION BY RANGE (received_at)")
        execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, received_at)")
        function_install(schema_editor.connection)
        # A partition for every period the rows fall in (and the periods ahead: post_migrate).
        execute(
            f"SELECT {FUNCTION}(at) FROM (SELECT DISTINCT date_trunc('day', received_at, 'UTC') AS at"
            f" FROM {OLD}) AS periods"
        )
        execute(f"SELECT {FUNCTION}(now())")
    else:
        execute(f"CREATE TABLE {TABLE} ({like})")
        execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id)")
    execute(f"INSERT INTO {TABLE} OVERRIDING SYSTEM VALUE SELECT * FROM {OLD}")
    if next_id:
        execute(f"ALTER TABLE {TABLE} ALTER COLUMN id RESTART WITH {int(next_id[0][0])}")
    if partitioned:
        execute(f"CREATE INDEX {TABLE}_uuid ON {TABLE} (uuid)")
    else:
        execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_uuid_key UNIQUE (uuid)")
    for index in model._meta.indexes:
        schema_editor.add_index(model, index)
    for name, definition in foreign_keys:
        execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
    for trigger in TRIGGERS:
        execute(trigger)
    for grantee, privileges in grants:
        execute(f"GRANT {privileges} ON TABLE {TABLE} TO {schema_editor.quote_name(grantee)}")
    execute(f"DROP TABLE {OLD}")  # and its sequence
    new_sequence = _rows(schema_editor, "SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])[0][0]
    execute(f"ALTER SEQUENCE {new_sequence} RENAME TO {sequence.rpartition('.')[2]}")
    if not partitioned:
        execute(f"DROP FUNCTION {FUNCTION}(timestamptz)")


def partition(apps, schema_editor):
    _rebuild(apps, schema_editor, partitioned=True)


def unpartition(apps, schema_editor):
    _rebuild(apps, schema_editor, partitioned=False)


class Migration(migrations.Migration):
    dependencies = [("auditlog", "0009_chain_to_tree")]

    operations = [
        migrations.CreateModel(
            name="EventKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "source", "idempotency_key", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "source",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="+",
                        to="auditlog.apikey",
                    ),
                ),
                ("idempotency_key", models.CharField(max_length=128)),
                ("event_uuid", models.UUIDField()),
                ("payload_hash", models.CharField(max_length=64)),
                ("received_at", models.DateTimeField()),
            ],
            options={
                "indexes": [models.Index(fields=["received_at"], name="auditlog_eventkey_received")],
            },
        ),
        migrations.RunPython(keys_fill, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="actionlog", name="auditlog_unique_idempotency_key"),
        migrations.RunPython(partition, unpartition),
    ]
