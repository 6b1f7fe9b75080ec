import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from auditlog.db.roles import maintenance_only
from auditlog.db.timeouts import command_timeouts
from auditlog.trail.sealing import SealError, events_seal, seal_cutoff_id
from auditlog.trail.tree import TrailError, trail_signer, tree_append


class Command(BaseCommand):
    help = (
        "Seal every event not sealed yet (and older than AUDITLOG_SEAL_DELAY_SECONDS): into the hash "
        "chain, with an HMAC checkpoint per block, when AUDITLOG_SEAL_KEY is set; and into the "
        "trail's Merkle tree, signing a checkpoint of it, when AUDITLOG_TRAIL_KEY is set "
        "(docs/trail-format.md). Idempotent and resumable: run it from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--block-size",
            type=int,
            default=5000,
            help="Events per checkpoint and per transaction (default 5,000).",
        )

    # Sealing reads and writes blocks of 5,000 events: minutes at most, never waiting long on a lock.
    @maintenance_only("auditlog_seal")
    @command_timeouts(statement=300, lock=5)
    def handle(self, *args, block_size, **options):
        if block_size < 1:
            raise CommandError("--block-size must be at least 1")
        started = time.monotonic()
        tty = self.stdout.isatty()

        def progress(sealed):
            if tty:
                self.stdout.write(f"\r{sealed:,} events sealed", ending="")
                self.stdout.flush()

        try:
            signer = trail_signer()
        except TrailError as exc:
            raise CommandError(str(exc)) from None
        if settings.AUDITLOG_SEAL_KEY or signer is None:
            try:
                result = events_seal(block_size=block_size, progress=progress)
            except SealError as exc:
                raise CommandError(str(exc)) from None
            if tty:
                self.stdout.write("")
            elapsed = time.monotonic() - started
            self.stdout.write(
                f"Sealed {result.sealed:,} events in {result.blocks} blocks in {elapsed:.1f} s; "
                f"the chain now ends at event {result.head_id}."
            )
        if signer is not None:
            started = time.monotonic()
            try:
                tree = tree_append(
                    upto_id=seal_cutoff_id(timezone.now()), block_size=block_size, progress=progress
                )
            except TrailError as exc:
                raise CommandError(str(exc)) from None
            if tty:
                self.stdout.write("")
            self.stdout.write(
                f"Added {tree.sealed:,} events to the trail's tree in {time.monotonic() - started:.1f} s; "
                f"signed a checkpoint of {tree.tree_size:,} leaves."
            )
