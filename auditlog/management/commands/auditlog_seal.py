import argparse
import os
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from auditlog.admin.access import access_event
from auditlog.db.connections import close_old_connections_between_units
from auditlog.db.partitions import events_partitioned, partitions_ensure_ahead
from auditlog.db.roles import maintenance_only
from auditlog.db.timeouts import command_timeouts
from auditlog.monitoring.silence import silence_check
from auditlog.trail.tree import TrailError, seal_cutoff_id, trail_signer, tree_append


class Command(BaseCommand):
    help = (
        "Seal every event not sealed yet (and older than AUDITLOG_SEAL_DELAY_SECONDS) into the trail's "
        "Merkle tree and sign a checkpoint of it with AUDITLOG_TRAIL_KEY (docs/trail-format.md). "
        "Idempotent and resumable. With --follow it keeps going (the Procfile's worker): it seals every "
        "AUDITLOG_SEAL_INTERVAL_SECONDS and signs a checkpoint at least every "
        "AUDITLOG_CHECKPOINT_INTERVAL_SECONDS, even when nothing arrived; SIGTERM stops it between rounds. "
        "Each run is an internal audit event naming the operating system's user (auditlog.seal; with "
        "--follow, auditlog.seal.start and auditlog.seal.stop), and so is a checkpoint signed with "
        "another key than the one before (auditlog.trail.key_rotate). Each --follow round also checks for "
        "sources gone silent (auditlog_silence)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--block-size",
            type=int,
            default=20_000,
            help="Events per transaction (default 20,000).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=len(os.sched_getaffinity(0)),
            help=(
                "Processes that hash a block of at least 10,000 events (catching up after a pause, or a "
                "first seal); smaller blocks are hashed in this one (default: the CPUs this process may "
                f"use, {len(os.sched_getaffinity(0))} here)."
            ),
        )
        parser.add_argument("--follow", action="store_true", help="Keep sealing until stopped.")
        parser.add_argument("--rounds", type=int, default=0, help=argparse.SUPPRESS)  # tests: stop after N

    # Sealing reads and writes blocks of 5,000 events: minutes at most, never waiting long on a lock.
    @maintenance_only("auditlog_seal")
    @command_timeouts(statement=300, lock=5)
    def handle(self, *args, block_size, workers, follow, rounds, **options):
        if block_size < 1:
            raise CommandError("--block-size must be at least 1")
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        self.workers = workers
        try:
            signer = trail_signer()
        except TrailError as exc:
            raise CommandError(str(exc)) from None
        if signer is None:
            raise CommandError(
                "AUDITLOG_TRAIL_KEY is not set: sealing signs checkpoints with it (auditlog_keygen)."
            )
        self.origin = signer.name
        if follow:
            return self._follow(block_size, rounds)
        tree = self._tree(block_size, checkpoint_after=0)
        access_event(
            "auditlog.seal",
            target_type="trail",
            target_id=self.origin,
            metadata={"sealed": tree.sealed, "tree_size": tree.tree_size},
        )

    def _progress(self):
        tty = self.stdout.isatty()

        def progress(sealed):
            if tty:
                self.stdout.write(f"\r{sealed:,} events sealed", ending="")
                self.stdout.flush()

        return progress

    def _tree(self, block_size, checkpoint_after):
        started = time.monotonic()
        try:
            tree = tree_append(
                upto_id=seal_cutoff_id(timezone.now()),
                block_size=block_size,
                progress=self._progress(),
                checkpoint_after=checkpoint_after,
                workers=self.workers,
            )
        except TrailError as exc:
            raise CommandError(str(exc)) from None
        signed = (
            f"signed a checkpoint of {tree.tree_size:,} leaves" if tree.checkpoint else "no checkpoint due"
        )
        if tree.key_changed_from is not None:
            access_event(
                "auditlog.trail.key_rotate",
                target_type="trail_key",
                target_id=tree.checkpoint.key_id,
                metadata={
                    "previous_key_id": tree.key_changed_from or None,
                    "tree_size": tree.tree_size,
                    "origin": self.origin,
                },
            )
        if tree.sealed or tree.checkpoint or not checkpoint_after:
            elapsed = time.monotonic() - started
            self.stdout.write(
                f"\rAdded {tree.sealed:,} events to the trail's tree in {elapsed:.2f} s; {signed}."
            )
        return tree

    def _follow(self, block_size, rounds):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        done = 0
        partitions_due = 0.0
        # The worker's life is in the trail: a sealer switched off is worth noticing (a SIGKILL
        # leaves a start without its stop).
        interval = settings.AUDITLOG_SEAL_INTERVAL_SECONDS
        access_event(
            "auditlog.seal.start",
            target_type="trail",
            target_id=self.origin,
            metadata={"interval_seconds": interval},
        )
        while not stop.is_set():
            try:
                if time.monotonic() >= partitions_due and events_partitioned():
                    # the partitions ahead, hourly: no cron needed where this worker runs
                    partitions_ensure_ahead(timezone.now(), settings.AUDITLOG_PARTITIONS_AHEAD)
                    partitions_due = time.monotonic() + 3600
                self._tree(block_size, checkpoint_after=settings.AUDITLOG_CHECKPOINT_INTERVAL_SECONDS)
                for event in silence_check():  # sources gone silent, or back
                    self.stdout.write(f"auditlog_seal --follow: {event.action} {event.metadata['source']}")
            # A database restart, or an event that cannot be sealed: say so and try again next
            # round (auditlog_verify reports events left unsealed); the worker never dies of it.
            except Exception as exc:  # noqa: BLE001
                interval = settings.AUDITLOG_SEAL_INTERVAL_SECONDS
                self.stderr.write(f"auditlog_seal --follow: {exc}; retrying in {interval:g} s")
            close_old_connections_between_units()
            done += 1
            if rounds and done >= rounds:
                break
            stop.wait(settings.AUDITLOG_SEAL_INTERVAL_SECONDS)
        try:
            access_event(
                "auditlog.seal.stop", target_type="trail", target_id=self.origin, metadata={"rounds": done}
            )
        finally:
            self.stdout.write("auditlog_seal --follow: stopped.")
