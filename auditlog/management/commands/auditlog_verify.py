import base64
import time
from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from auditlog.db.timeouts import command_timeouts
from auditlog.models import Checkpoint, SealAnchor, SealBlock, TrailLeaf
from auditlog.trail.sealing import SealError, chain_verify
from auditlog.trail.tree import TrailError
from auditlog.trail.tree_verify import tree_verify

MAX_LISTED = 20


def moment(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Recompute the trail's Merkle tree from the events and check every signed checkpoint and "
        "retention record with the verifier keys (AUDITLOG_TRAIL_VERIFIER_KEYS, or the signer key's); "
        "and the older seal chain, where there is one, with AUDITLOG_SEAL_KEY. Exits 0 when all holds; "
        "otherwise names the first event that was modified, deleted or inserted out of band, the "
        "checkpoint that does not hold, a gap or a stale checkpoint, or events left unsealed past "
        "AUDITLOG_SEAL_BOUND_SECONDS, and exits 1."
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

        chain = SealBlock.objects.exists() or SealAnchor.objects.exists() or not self._tree_in_use()
        if chain:
            self._chain(since, progress, started)
        if self._tree_in_use():
            self._tree(progress, time.monotonic())

    @staticmethod
    def _tree_in_use() -> bool:
        return bool(
            settings.AUDITLOG_TRAIL_KEY
            or settings.AUDITLOG_TRAIL_KEY_FILE
            or settings.AUDITLOG_TRAIL_VERIFIER_KEYS
            or TrailLeaf.objects.exists()
            or Checkpoint.objects.exists()
        )

    def _chain(self, since, progress, started):
        try:
            result = chain_verify(since=since, progress=progress)
        except SealError as exc:
            raise CommandError(str(exc)) from None
        if self.stderr.isatty():
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
