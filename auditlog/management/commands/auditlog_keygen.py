import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from auditlog.trail.note import NoteError, Signer


class Command(BaseCommand):
    help = (
        "Make an Ed25519 key pair for signing the trail's checkpoints (C2SP signed notes). Prints the "
        "verifier key (publish it: auditors verify checkpoints with it) and writes the signer key to "
        "--out, readable by its owner only (or prints it with --out -). Give the signer key to "
        "auditlog_seal as AUDITLOG_TRAIL_KEY or AUDITLOG_TRAIL_KEY_FILE; it never goes in the database. "
        "To rotate: make a new key, move the old verifier key to AUDITLOG_TRAIL_VERIFIER_KEYS."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--origin",
            required=True,
            help="The log's name in checkpoints and keys: unique, host-like, e.g. audit.example.com/log.",
        )
        parser.add_argument(
            "--out",
            required=True,
            help="File to write the signer key to (created 0600, never overwritten); - prints it.",
        )

    def handle(self, *args, origin, out, **options):
        try:
            signer = Signer.generate(origin)
        except NoteError as exc:
            raise CommandError(f"--origin: {exc}") from None
        if out == "-":
            self.stdout.write(signer.text())
        else:
            try:
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise CommandError(f"{out} exists: the command never overwrites a key.") from None
            with os.fdopen(fd, "w") as file:
                file.write(signer.text() + "\n")
            self.stdout.write(f"Wrote the signer key to {Path(out).resolve()} (mode 0600).")
        self.stdout.write("The verifier key, to publish:")
        self.stdout.write(signer.verifier().text())
