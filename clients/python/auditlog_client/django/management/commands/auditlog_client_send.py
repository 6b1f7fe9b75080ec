import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from auditlog_client.django.sender import sender_for


class Command(BaseCommand):
    help = (
        "Deliver the audit events this app recorded (the auditlog_client outbox table) to the service "
        "in AUDITLOG_CLIENT, in batches of up to 1,000; an event the service refuses for good is kept as "
        "a dead letter. Without --follow: until the outbox is empty or --timeout passes (exit 1 then). "
        "With --follow: until SIGTERM or SIGINT, as a worker beside the app. Safe to run several at once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--follow", action="store_true", help="Keep delivering until stopped.")
        parser.add_argument(
            "--timeout", type=float, default=300.0, help="Without --follow: give up after (s)."
        )
        parser.add_argument(
            "--database", default=None, help="The outbox's database alias (default: the setting)."
        )

    def handle(self, *args, follow, timeout, database, **options):
        try:
            sender = sender_for(database)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        store = sender.store
        if follow:
            stop, wake = threading.Event(), threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            sender.run(stop, wake)
            self.stdout.write("auditlog_client_send: stopped.")
            return
        store.release_dead_owners()
        last, deadline = store.last_id(), time.monotonic() + timeout
        while store.pending_through(last):
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"{store.pending_through(last):,} events not delivered within {timeout:g} s"
                )
            delay = sender.send_once()
            close_old_connections()
            if delay:
                time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        stats = store.stats()
        self.stdout.write(
            f"Delivered; {stats.delivered:,} delivered in all, {stats.dead_lettered:,} dead letters, "
            f"{stats.pending:,} pending."
        )
