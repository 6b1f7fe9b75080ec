"""Append-only events: UPDATE is refused; DELETE (and TRUNCATE) only with a purge permit.

A permit is a row in auditlog_delete_permit that `auditlog_purge` (and `flush`) insert inside
their own transaction and remove before commit: no other connection can see it. The table is
not a model, so nothing else in Django writes to it.
"""

from django.db import migrations

POSTGRESQL = [
    "CREATE TABLE auditlog_delete_permit (granted_by varchar(100) NOT NULL)",
    """
    CREATE FUNCTION auditlog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'TRUNCATE') AND EXISTS (SELECT 1 FROM auditlog_delete_permit) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'auditlog_actionlog is append-only: % refused (only auditlog_purge deletes)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """CREATE TRIGGER auditlog_append_only BEFORE UPDATE OR DELETE ON auditlog_actionlog
       FOR EACH ROW EXECUTE FUNCTION auditlog_append_only()""",
    """CREATE TRIGGER auditlog_no_truncate BEFORE TRUNCATE ON auditlog_actionlog
       FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only()""",
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER auditlog_no_truncate ON auditlog_actionlog",
    "DROP TRIGGER auditlog_append_only ON auditlog_actionlog",
    "DROP FUNCTION auditlog_append_only()",
    "DROP TABLE auditlog_delete_permit",
]
SQLITE = [
    "CREATE TABLE auditlog_delete_permit (granted_by varchar(100) NOT NULL)",
    """CREATE TRIGGER auditlog_no_update BEFORE UPDATE ON auditlog_actionlog
       BEGIN SELECT RAISE(ABORT, 'auditlog_actionlog is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER auditlog_no_delete BEFORE DELETE ON auditlog_actionlog
       WHEN NOT EXISTS (SELECT 1 FROM auditlog_delete_permit)
       BEGIN SELECT RAISE(ABORT, 'auditlog_actionlog is append-only: DELETE refused (only auditlog_purge deletes)'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER auditlog_no_delete",
    "DROP TRIGGER auditlog_no_update",
    "DROP TABLE auditlog_delete_permit",
]


def run(statements):
    def apply(apps, schema_editor):
        for statement in statements[schema_editor.connection.vendor]:
            schema_editor.execute(statement, params=None)  # plpgsql uses % itself

    return apply


class Migration(migrations.Migration):
    dependencies = [("auditlog", "0004_sealing")]

    operations = [
        migrations.RunPython(
            run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        )
    ]
