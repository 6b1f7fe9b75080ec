from django.db import migrations


def action_c_collation(apps, schema_editor):
    """On PostgreSQL, order `action` byte-wise so `action=invoice.*` is an index range scan.

    Under a linguistic collation (en_US) a prefix is not a contiguous key range and LIKE
    cannot use a plain btree index. Actions are ASCII ([a-z0-9_.:-]), so "C" loses nothing.
    SQLite compares bytes (BINARY) already.
    """
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE auditlog_actionlog ALTER COLUMN action TYPE varchar(100) COLLATE "C"')


class Migration(migrations.Migration):
    dependencies = [("auditlog", "0001_initial")]

    operations = [migrations.RunPython(action_c_collation, migrations.RunPython.noop)]
