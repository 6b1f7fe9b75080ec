"""A source that stops sending is noticed: an intruder's first move is often to switch logging
off, and silence looks like a quiet day unless something watches for it.

Each usable write key has an expected cadence: its expected_interval_seconds, or
AUDITLOG_SILENCE_AFTER_SECONDS (a day by default: the least activity a production source shows
is a day's logins or a nightly job, so a day of nothing is worth a look without waking anyone
for a quiet night; give busy sources minutes and weekend-quiet ones more). A source is silent
when its newest event (by occurred_at, from the (source, occurred_at) index) was received longer
ago than that, or, with no event at all, the key was made longer ago than that.

silence_check() (each round of `auditlog_seal --follow`, or `manage.py auditlog_silence`) records
an internal event when a source goes silent (auditlog.source.silent) and another when it sends
again (auditlog.source.resumed); the metrics show every source's age and state at each scrape.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from auditlog.ingest.services import event_record_internal
from auditlog.models import ActionLog, ApiKey, Scope


@dataclass(frozen=True)
class SourceState:
    key: ApiKey
    last_event_at: datetime | None  # received_at of its newest event
    bound: timedelta

    def quiet_for(self, now: datetime) -> timedelta:
        return now - (self.last_event_at or self.key.created_at)

    def silent(self, now: datetime) -> bool:
        return self.quiet_for(now) > self.bound


def watched_sources() -> list[ApiKey]:
    """Usable keys that write: the sources expected to send."""
    return [
        key
        for key in ApiKey.objects.filter(revoked_at__isnull=True).order_by("name")
        if Scope.WRITE in key.scope_set
    ]


def source_states() -> list[SourceState]:
    states = []
    for key in watched_sources():
        last = (
            ActionLog.objects.filter(source=key)
            .order_by("-occurred_at", "-id")
            .values_list("received_at", flat=True)
            .first()
        )
        seconds = key.expected_interval_seconds or settings.AUDITLOG_SILENCE_AFTER_SECONDS
        states.append(SourceState(key, last, timedelta(seconds=seconds)))
    return states


def silence_check(now: datetime | None = None) -> list[ActionLog]:
    """Record each source that went silent or resumed since the last check; return the events."""
    now = now or timezone.now()
    recorded = []
    for state in source_states():
        key, silent = state.key, state.silent(now)
        if silent == (key.silent_since is not None):
            continue
        with transaction.atomic():
            changed = ApiKey.objects.filter(pk=key.pk, silent_since__isnull=silent).update(
                silent_since=now if silent else None
            )
        if not changed:  # another checker got there first
            continue
        recorded.append(
            event_record_internal(
                action="auditlog.source.silent" if silent else "auditlog.source.resumed",
                actor_id="auditlog silence check",
                actor_type="system",
                target_type="apikey",
                target_id=key.prefix,
                outcome="failure" if silent else "success",
                metadata={
                    "source": key.name,
                    "last_event_received_at": state.last_event_at.isoformat()
                    if state.last_event_at
                    else None,
                    "expected_interval_seconds": int(state.bound.total_seconds()),
                    **(
                        {"silent_since": key.silent_since.isoformat()}
                        if not silent and key.silent_since
                        else {}
                    ),
                },
            )
        )
    return recorded
