"""The admin index's one line per source: events today, the newest event, failures today, and
whether a write key's source has gone silent (auditlog.monitoring.silence, checked each round
of auditlog_seal --follow)."""

from dataclasses import dataclass

from django import template
from django.conf import settings

from auditlog.models import Scope
from auditlog.reading.selectors import SourceSummary, sources_summary

register = template.Library()


@dataclass(frozen=True)
class SourceLine:
    summary: SourceSummary
    watch: str  # "" for a source nobody expects events from (readers, the internal source)
    silent: bool


@register.simple_tag
def auditlog_sources_summary():
    lines = []
    for row in sources_summary():
        key = row.source
        watched = key.revoked_at is None and Scope.WRITE in key.scope_set
        bound = key.expected_interval_seconds or settings.AUDITLOG_SILENCE_AFTER_SECONDS
        if not watched:
            watch = ""
        elif key.silent_since is not None:
            since = f"{key.silent_since:%Y-%m-%d %H:%M:%S}"
            watch = f"SILENT since {since} (expects an event every {_duration(bound)})"
        else:
            watch = f"expects an event every {_duration(bound)}"
        lines.append(SourceLine(row, watch, watched and key.silent_since is not None))
    return lines


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} s"
