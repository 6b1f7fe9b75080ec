from django.core.management.base import BaseCommand
from django.utils import timezone

from auditlog.monitoring.silence import silence_check, source_states


class Command(BaseCommand):
    help = (
        "List every write key's source with the time since its newest event and its bound "
        "(the key's expected interval, or AUDITLOG_SILENCE_AFTER_SECONDS), and record an internal event "
        "for each source that went silent (auditlog.source.silent) or sent again (auditlog.source.resumed) "
        "since the last check. auditlog_seal --follow does this every round; run this from cron where no "
        "worker runs. Exit status 1 while any source is silent."
    )

    def handle(self, *args, **options):
        recorded = silence_check()
        now = timezone.now()
        silent = 0
        for state in source_states():
            quiet = state.quiet_for(now).total_seconds()
            is_silent = state.silent(now)
            silent += is_silent
            self.stdout.write(
                f"{state.key.name} ({state.key.prefix}): {'SILENT' if is_silent else 'ok'}, last event "
                f"{quiet:,.0f} s ago, bound {state.bound.total_seconds():,.0f} s"
            )
        for event in recorded:
            self.stdout.write(f"recorded {event.action} for {event.metadata['source']}")
        if silent:
            raise SystemExit(1)
