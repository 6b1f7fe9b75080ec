from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from auditlog.admin.access import api_key_revoked
from auditlog.keys.services import MSG_REVOKED_FROM_ANOTHER_PROCESS, api_key_revoke
from auditlog.models import ApiKey


def revoked_notice() -> str:
    return MSG_REVOKED_FROM_ANOTHER_PROCESS.format(seconds=settings.AUDITLOG_API_KEY_CACHE_SECONDS)


class Command(BaseCommand):
    @property
    def help(self):
        return f"Revoke an API key by its prefix. {revoked_notice()}"

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="The key's prefix, as shown by the admin or at creation.")

    def handle(self, *args, prefix, **options):
        try:
            key = ApiKey.objects.get(prefix=prefix)
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key with prefix {prefix!r}.") from None
        if key.revoked_at is not None:
            raise CommandError(
                f"API key {key} was already revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC."
            )
        api_key_revoke(key=key)
        api_key_revoked(key)
        self.stdout.write(f"Revoked API key {key}. {revoked_notice()}")
