import time

from django.core.management.base import BaseCommand, CommandError

from auditlog.db.timeouts import command_timeouts
from auditlog.ingest.demo import events_demo_create


class Command(BaseCommand):
    help = (
        "Fill the database with realistic demo events (a few thousand skewed actors, a few dozen "
        "actions, IPv4/IPv6, failures, metadata, spread over the last 90 days), bulk-inserted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--count", type=int, default=10_000, help="How many events to add (default 10,000)."
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable data.")

    # Loading millions of demo events is one long COPY.
    @command_timeouts(statement=0, lock=5)
    def handle(self, *args, count, seed, **options):
        if count < 1:
            raise CommandError("--count must be at least 1")
        started = time.monotonic()
        tty = self.stdout.isatty()

        def progress(done):
            rate = done / max(time.monotonic() - started, 1e-9)
            line = f"{done:,} / {count:,} events ({rate:,.0f}/s)"
            if tty:
                self.stdout.write(f"\r{line}", ending="")
                self.stdout.flush()
            elif done == count or done % 100_000 == 0:
                self.stdout.write(line)

        events_demo_create(count, seed=seed, progress=progress)
        elapsed = time.monotonic() - started
        if tty:
            self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(f"Added {count:,} demo events in {elapsed:.1f} s ({count / elapsed:,.0f}/s).")
        )
