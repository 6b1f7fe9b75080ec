#!/usr/bin/env python
import os
import sys

# Commands that change the schema or the trail's tables run as the role that owns the tables:
# with DATABASE_MAINTENANCE_URL set, they connect with it (config/settings.py, docs/roles.md).
MAINTENANCE_COMMANDS = {"migrate", "flush", "auditlog_seal", "auditlog_purge", "auditlog_roles"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] and sys.argv[1] in MAINTENANCE_COMMANDS:
        os.environ.setdefault("AUDITLOG_DATABASE_ROLE", "maintenance")
    # Commands keep session state: past PgBouncer, straight to PostgreSQL (DATABASE_DIRECT_URL).
    os.environ.setdefault("AUDITLOG_DATABASE_ROUTE", "direct")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
