import time
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from auditlog.db.timeouts import command_timeouts
from auditlog.trail.sealing import SealError, chain_verify


def moment(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Recompute the seal chain and its checkpoints. Exits 0 when every sealed event is intact; "
        "otherwise names the first event that was modified, deleted or inserted out of band (or the "
        "forged checkpoint) and exits 1."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            type=moment,
            help="Start at the checkpoint before the first event received at this date or ISO time (UTC).",
        )

    # Verification reads the table in chunks, each a short query: generous bounds, so a frozen
    # server fails a nightly run instead of hanging it.
    @command_timeouts(statement=300, lock=5)
    def handle(self, *args, since, **options):
        started = time.monotonic()
        tty = self.stderr.isatty()

        def progress(verified):
            if tty:
                self.stderr.write(f"\r{verified:,} events verified", ending="")

        try:
            result = chain_verify(since=since, progress=progress)
        except SealError as exc:
            raise CommandError(str(exc)) from None
        if tty:
            self.stderr.write("")
        elapsed = time.monotonic() - started
        if result.problem is not None:
            where = f" (event id {result.problem.event_id})" if result.problem.event_id is not None else ""
            self.stdout.write(f"BROKEN{where}: {result.problem.message}.")
            self.stdout.write(f"{result.verified:,} events before it verified.")
            raise CommandError(f"the audit trail does not verify{where}")
        self.stdout.write(
            f"OK: {result.verified:,} events in {result.blocks} checkpoints verified in {elapsed:.1f} s; "
            f"chain head: event {result.head_id}, {result.head_hash}."
        )
