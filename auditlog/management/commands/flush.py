from django.core.management.commands import flush
from django.db import transaction

from auditlog.db.roles import maintenance_only
from auditlog.db.writer_queue import outside_the_queue
from auditlog.trail.append_only import delete_permit_grant, delete_permit_revoke


class Command(flush.Command):
    help = (
        f"{flush.Command.help} Audit events are append-only (database triggers): flush, which "
        "exists to wipe a database (tests, development), grants itself the purge permit."
    )

    @maintenance_only("flush")
    def handle(self, **options):
        database = options["database"]
        with outside_the_queue("wiping the database"), transaction.atomic(using=database):
            delete_permit_grant("flush", using=database)
            super().handle(**options)
            delete_permit_revoke(using=database)
