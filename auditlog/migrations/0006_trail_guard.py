"""The trail's own tables get the events' protection, and a permit holds only where it was made.

PostgreSQL: one trigger function guards events and the seal tables. UPDATE is refused (on the
anchor, which purge moves, it needs a permit, as INSERT does there); DELETE and TRUNCATE need a
permit. A permit counts only in the transaction that wrote it (transaction_id), so a permit row
that was ever committed permits nothing. The function names the permit table by its schema and
searches pg_temp last: a temporary table of the same name, which any role can create, is never
the one it reads. Who may write a permit at all is the roles' business (auditlog/db/roles.py):
the runtime role has no privilege on the permit table.

SQLite: the same rules as triggers; auditlog.db.sqlite3 turns recursive_triggers on for every
connection, so REPLACE, which deletes the row it replaces, fires the DELETE trigger.
"""

from django.db import migrations

SEAL_TABLES = ("auditlog_eventseal", "auditlog_sealblock")
ANCHOR = "auditlog_sealanchor"
TABLES = ("auditlog_actionlog", *SEAL_TABLES, ANCHOR)

GUARD = """
CREATE OR REPLACE FUNCTION auditlog_append_only() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- DELETE and TRUNCATE go through with a permit made in this transaction, and so do the
    -- operations the trigger names as its arguments; nothing else does.
    IF (TG_OP IN ('DELETE', 'TRUNCATE') OR TG_OP = ANY (TG_ARGV)) AND EXISTS (
        SELECT 1 FROM {schema}.auditlog_delete_permit WHERE transaction_id = txid_current()
    ) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused (only auditlog_purge deletes)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$
"""
GUARD_0005 = """
CREATE OR REPLACE FUNCTION auditlog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') AND EXISTS (SELECT 1 FROM auditlog_delete_permit) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'auditlog_actionlog is append-only: % refused (only auditlog_purge deletes)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$
"""


def postgresql(schema):
    statements = [
        "ALTER TABLE auditlog_delete_permit ADD COLUMN transaction_id bigint NOT NULL DEFAULT txid_current()",
        "REVOKE ALL ON TABLE auditlog_delete_permit FROM PUBLIC",
        GUARD.format(schema=schema),
    ]
    for table in SEAL_TABLES:
        statements.append(
            f"CREATE TRIGGER auditlog_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION auditlog_append_only()"
        )
    statements.append(
        f"CREATE TRIGGER auditlog_append_only BEFORE INSERT OR UPDATE OR DELETE ON {ANCHOR}"
        " FOR EACH ROW EXECUTE FUNCTION auditlog_append_only('INSERT', 'UPDATE')"
    )
    for table in (*SEAL_TABLES, ANCHOR):
        statements.append(
            f"CREATE TRIGGER auditlog_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only()"
        )
    return statements


def postgresql_reverse(schema):
    statements = []
    for table in (*SEAL_TABLES, ANCHOR):
        statements.append(f"DROP TRIGGER auditlog_no_truncate ON {table}")
        statements.append(f"DROP TRIGGER auditlog_append_only ON {table}")
    return [*statements, GUARD_0005, "ALTER TABLE auditlog_delete_permit DROP COLUMN transaction_id"]


WITHOUT_PERMIT = "WHEN NOT EXISTS (SELECT 1 FROM auditlog_delete_permit)"
SQLITE_RULES = [
    *(
        (table, operation, when)
        for table in SEAL_TABLES
        for operation, when in (("UPDATE", ""), ("DELETE", WITHOUT_PERMIT))
    ),
    *((ANCHOR, operation, WITHOUT_PERMIT) for operation in ("INSERT", "UPDATE", "DELETE")),
]


def sqlite(schema):
    return [
        f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} {when}"
        f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused"
        " (only auditlog_purge deletes)'); END"
        for table, operation, when in SQLITE_RULES
    ]


def sqlite_reverse(schema):
    return [f"DROP TRIGGER {table}_no_{operation.lower()}" for table, operation, _ in SQLITE_RULES]


def run(statements):
    def apply(apps, schema_editor):
        connection = schema_editor.connection
        schema = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_schema()")
                schema = connection.ops.quote_name(cursor.fetchone()[0])
        for statement in statements[connection.vendor](schema):
            schema_editor.execute(statement, params=None)  # plpgsql uses % itself

    return apply


class Migration(migrations.Migration):
    dependencies = [("auditlog", "0005_append_only_triggers")]

    operations = [
        migrations.RunPython(
            run({"postgresql": postgresql, "sqlite": sqlite}),
            run({"postgresql": postgresql_reverse, "sqlite": sqlite_reverse}),
        )
    ]
