from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from auditlog.db.partitions import (
    events_partitioned,
    function_install,
    partitions_ensure_ahead,
    partitions_list,
)
from auditlog.db.roles import maintenance_only
from auditlog.db.timeouts import command_timeouts


class Command(BaseCommand):
    help = (
        "PostgreSQL: make the events table's partitions for this period and the --ahead periods after it "
        "(AUDITLOG_PARTITION_INTERVAL: day, week or month), where missing, and list them all. Idempotent: "
        "migrate and auditlog_seal --follow run it too; cron it daily where neither runs often. A new "
        "partition is attached without blocking ingest or reads. On SQLite there is one table: nothing to do."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--ahead",
            type=int,
            default=settings.AUDITLOG_PARTITIONS_AHEAD,
            metavar="N",
            help="Periods after the current one that must exist (default: AUDITLOG_PARTITIONS_AHEAD, "
            f"{settings.AUDITLOG_PARTITIONS_AHEAD}).",
        )
        parser.add_argument("--list", action="store_true", help="Only list the partitions; make none.")

    @maintenance_only("auditlog_partitions")
    @command_timeouts(statement=60, lock=5)
    def handle(self, *args, ahead, **options):
        if not events_partitioned():
            self.stdout.write(
                "The events table is not partitioned here (SQLite keeps one table): nothing to do."
            )
            return
        if ahead < 0:
            raise CommandError("--ahead must be 0 or more")
        before = {part.name for part in partitions_list()}
        if not options["list"]:
            function_install(connection)  # for the interval configured now
            partitions_ensure_ahead(timezone.now(), ahead)
        for part in partitions_list():
            made = "  (made now)" if part.name not in before else ""
            self.stdout.write(
                f"{part.name}  {part.lower:%Y-%m-%d %H:%M} to {part.upper:%Y-%m-%d %H:%M} UTC"
                f"  ~{part.estimated_rows:,} events{made}"
            )
