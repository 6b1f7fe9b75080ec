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
            "every source's events, this service's own included: auditors' tools, SIEM exports). "
            "Default: write.",
        )

    def handle(self, *args, name, scopes, **options):
        wanted = {scope.strip() for scope in scopes.split(",") if scope.strip()}
        unknown = wanted - set(Scope.values)
        if not wanted or unknown:
            raise CommandError(
                f"--scopes: use write, read, read_all, or several, comma-separated (got {scopes!r})"
            )
        if not name.strip():
            raise CommandError("--name must not be blank")
        try:
            key, token = api_key_create(name=name.strip(), scopes=wanted)
        except ValueError as exc:
            raise CommandError(f"--name: {exc}") from None
        api_key_created(key)
        self.stdout.write(f"Created API key {key.name!r}, prefix {key.prefix}, scopes {key.scopes}.")
        self.stdout.write("The token below is shown only now; store it in the producer's secrets:")
        self.stdout.write(token)
