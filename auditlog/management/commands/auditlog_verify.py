import base64
import time

from django.core.management.base import BaseCommand, CommandError

from auditlog.db.timeouts import command_timeouts
from auditlog.trail.tree import TrailError
from auditlog.trail.tree_verify import tree_verify

MAX_LISTED = 20


class Command(BaseCommand):
    help = (
        "Recompute the trail's Merkle tree from the events and check every signed checkpoint and "
        "retention record with the verifier keys (AUDITLOG_TRAIL_VERIFIER_KEYS, or the signer key's). "
        "Exits 0 when all holds; "
        "otherwise names the first event that was modified, deleted or inserted out of band, the "
        "checkpoint that does not hold, a gap or a stale checkpoint, or events left unsealed past "
        "AUDITLOG_SEAL_BOUND_SECONDS, and exits 1."
    )

    # Verification reads the table in chunks, each a short query: generous bounds, so a frozen
    # server fails a nightly run instead of hanging it.
    @command_timeouts(statement=300, lock=5)
    def handle(self, *args, **options):
        started = time.monotonic()
        tty = self.stderr.isatty()

        def progress(verified):
            if tty:
                self.stderr.write(f"\r{verified:,} events verified", ending="")

        self._tree(progress, started)

    def _tree(self, progress, started):
        try:
            result = tree_verify(progress=progress)
        except TrailError as exc:
            raise CommandError(str(exc)) from None
        if self.stderr.isatty():
            self.stderr.write("")
        elapsed = time.monotonic() - started
        if not result.ok:
            self.stdout.write(f"BROKEN: {result.problems[0]}.")
            for problem in result.problems[1:MAX_LISTED]:
                self.stdout.write(f"  and: {problem}.")
            if len(result.problems) > MAX_LISTED:
                self.stdout.write(f"  and {len(result.problems) - MAX_LISTED:,} more problems.")
            raise CommandError(f"the trail's tree does not verify: {len(result.problems):,} problem(s)")
        root = base64.b64encode(result.root).decode()
        self.stdout.write(
            f"OK: the trail's tree of {result.leaves:,} leaves ({result.purged:,} purged by signed retention "
            f"records) reproduces all {result.checkpoints:,} signed checkpoints; verified in "
            f"{elapsed:.1f} s; root {root}."
        )
