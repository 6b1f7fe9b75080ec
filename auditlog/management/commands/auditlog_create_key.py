from django.core.management.base import BaseCommand, CommandError

from auditlog.admin.access import api_key_created
from auditlog.keys.services import api_key_create
from auditlog.models import Scope


class Command(BaseCommand):
    help = "Create an API key. The token is printed once, alone on the last line, and never stored."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who uses the key, e.g. billing-service.")
        parser.add_argument(
            "--scopes",
            default="write",
            help="Comma-separated scopes: write (POST events), read (GET its own events), read_all (GET "
            "every source's events, this service's own included: auditors' tools, SIEM exports), metrics "
            "(GET /metrics: Prometheus). Default: write.",
        )
        parser.add_argument(
            "--expect-every",
            type=int,
            default=None,
            metavar="SECONDS",
            help="A write key's source is reported silent after this long without an event "
            "(default: AUDITLOG_SILENCE_AFTER_SECONDS).",
        )

    def handle(self, *args, name, scopes, expect_every, **options):
        wanted = {scope.strip() for scope in scopes.split(",") if scope.strip()}
        unknown = wanted - set(Scope.values)
        if not wanted or unknown:
            raise CommandError(
                f"--scopes: use write, read, read_all, metrics, or several, comma-separated (got {scopes!r})"
            )
        if not name.strip():
            raise CommandError("--name must not be blank")
        if expect_every is not None and expect_every < 1:
            raise CommandError("--expect-every must be at least 1 second")
        try:
            key, token = api_key_create(
                name=name.strip(), scopes=wanted, expected_interval_seconds=expect_every
            )
        except ValueError as exc:
            raise CommandError(f"--name: {exc}") from None
        api_key_created(key)
        self.stdout.write(f"Created API key {key.name!r}, prefix {key.prefix}, scopes {key.scopes}.")
        self.stdout.write("The token below is shown only now; store it in the producer's secrets:")
        self.stdout.write(token)
