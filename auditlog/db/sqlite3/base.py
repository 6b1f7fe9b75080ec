"""Django's SQLite backend, with the database file created readable by its owner only, and
recursive triggers on for every connection.

Recursive triggers: SQLite fires DELETE triggers for the row a REPLACE (INSERT OR REPLACE, or a
column's ON CONFLICT REPLACE) removes only when they are on; without them, REPLACE of an existing
event would remove it past the append-only triggers (auditlog/migrations/0006_trail_guard.py).

SQLite creates a missing database 0644 (less the umask), and gives its -wal and -shm files the
database's mode: creating the file 0600 first makes all three 0600 (auditlog.db.private_files).
"""

from django.db.backends.sqlite3 import base, client

from auditlog.db.private_files import private_file_create


class DatabaseClient(client.DatabaseClient):
    """`manage.py dbshell`: the sqlite3 shell, with recursive triggers on as well."""

    @classmethod
    def settings_to_cmd_args_env(cls, settings_dict, parameters):
        args, env = super().settings_to_cmd_args_env(settings_dict, parameters)
        return [args[0], "-cmd", "PRAGMA recursive_triggers = ON", *args[1:]], env


class DatabaseWrapper(base.DatabaseWrapper):
    client_class = DatabaseClient

    def get_new_connection(self, conn_params):
        name = str(conn_params["database"])
        if not self.is_in_memory_db() and not name.startswith("file:"):
            private_file_create(name)
        connection = super().get_new_connection(conn_params)
        connection.execute("PRAGMA recursive_triggers = ON")
        return connection
