import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from auditlog.admin.access import access_event
from auditlog.db.roles import maintenance_only
from auditlog.db.timeouts import command_timeouts
from auditlog.trail.retention import events_purge, events_purge_plan
from auditlog.trail.tree import TrailError


class Command(BaseCommand):
    help = (
        "Delete events received more than --older-than days ago, oldest first, never holding up ingest. "
        "On PostgreSQL a partition wholly older than the cutoff goes whole (optionally archived first with "
        "--archive-dir; then DETACH PARTITION ... CONCURRENTLY and DROP); the rest goes in short batches. "
        "Once the trail has a tree, only sealed events go, their leaves stay, and each step signs a "
        "retention record with AUDITLOG_TRAIL_KEY, so auditlog_verify and the offline verifier tell the "
        "purge from a deletion. The purge is recorded as an event."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=int,
            default=settings.AUDITLOG_RETENTION_DAYS,
            metavar="DAYS",
            help="Retention in days (default: AUDITLOG_RETENTION_DAYS).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Say what would go; delete nothing.")
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Events per transaction (default 1,000)."
        )
        parser.add_argument(
            "--archive-dir",
            type=Path,
            metavar="DIR",
            help="Before a partition is dropped, write its events to DIR/<partition>.jsonl.gz (the export's "
            "JSON Lines), read the file back and count it; nothing is dropped that is not in a whole file.",
        )
        parser.add_argument(
            "--batched",
            action="store_true",
            help="Delete row by row even where a whole partition could be dropped (to compare the two).",
        )

    # Each batch deletes 1,000 rows in a short transaction.
    @maintenance_only("auditlog_purge")
    @command_timeouts(statement=60, lock=5)
    def handle(self, *args, older_than, dry_run, batch_size, archive_dir, batched, **options):
        if older_than is None:
            raise CommandError("Give --older-than DAYS or set AUDITLOG_RETENTION_DAYS.")
        if older_than < 1 or batch_size < 1:
            raise CommandError("--older-than and --batch-size must be at least 1")
        plan = events_purge_plan(older_than_days=older_than, whole_partitions=not batched)
        self.stdout.write(
            f"{plan.total:,} events received before {plan.cutoff:%Y-%m-%d %H:%M} UTC are due for deletion."
        )
        for part in plan.partitions:
            self.stdout.write(f"  {part.partition.name}: {part.count:,} events, dropped whole")
        if plan.unsealed_old:
            self.stdout.write(
                f"{plan.unsealed_old:,} more are as old but not sealed yet: they are kept; "
                "run auditlog_seal first."
            )
        if dry_run or not plan.total:
            return
        started = time.monotonic()
        tty = self.stdout.isatty()

        def progress(purged):
            if tty:
                self.stdout.write(f"\r{purged:,} / {plan.total:,} deleted", ending="")
                self.stdout.flush()

        try:
            result = events_purge(plan, batch_size=batch_size, progress=progress, archive_dir=archive_dir)
        except TrailError as exc:
            raise CommandError(str(exc)) from None
        if tty:
            self.stdout.write("")
        access_event(
            "auditlog.purge",
            target_type="events",
            target_id=f"older than {older_than} days",
            metadata={
                "older_than_days": older_than,
                "deleted": result.purged,
                "through_event_id": plan.through_id,
                "batches": result.batches,
                "partitions_dropped": [part.partition.name for part in plan.partitions],
                "archived": [str(path) for path in result.archived],
            },
        )
        elapsed = time.monotonic() - started
        for path in result.archived:
            self.stdout.write(f"Archived to {path}")
        self.stdout.write(
            f"Deleted {result.purged:,} events ({result.partitions} partitions dropped whole, "
            f"{result.batches} batches) in {elapsed:.1f} s."
        )
