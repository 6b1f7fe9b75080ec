"""Retention: delete the oldest events in short batches, keeping the seal chain verifiable."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from auditlog.db.connections import close_old_connections_between_units
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.models import ActionLog, EventSeal, SealAnchor, SealBlock
from auditlog.trail.append_only import delete_permit_grant, delete_permit_revoke
from auditlog.trail.sealing import anchor_mac, current_key, seal_head

PAUSE_BETWEEN_BATCHES = 0.01  # seconds: lets waiting writers in between batches


@dataclass
class PurgePlan:
    cutoff: datetime
    through_id: int  # delete ids <= this (0: nothing)
    count: int
    unsealed_old: int  # old enough to go, but not sealed yet: kept until sealed


@dataclass
class PurgeResult:
    plan: PurgePlan
    purged: int = 0
    batches: int = 0


def events_purge_plan(*, older_than_days: int) -> PurgePlan:
    """Which events go: a prefix of ids received before the cutoff (received_at is server time,
    in step with ids; client-supplied occurred_at is not). When the trail is sealed, only sealed
    events go, so the chain always resumes from the anchor."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    first_kept = (
        ActionLog.objects.filter(received_at__gte=cutoff).order_by("id").values_list("id", flat=True).first()
    )
    if first_kept is None:
        through = ActionLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    else:
        through = first_kept - 1
    unsealed_old = 0
    if SealBlock.objects.exists():
        sealed_through = seal_head()[0]
        if sealed_through < through:
            unsealed_old = ActionLog.objects.filter(id__gt=sealed_through, id__lte=through).count()
            through = sealed_through
    count = ActionLog.objects.filter(id__lte=through).count()
    return PurgePlan(cutoff, through, count, unsealed_old)


def events_purge(
    plan: PurgePlan, *, batch_size: int, progress: Callable[[int], None] | None = None
) -> PurgeResult:
    """Delete the plan's events, oldest first, one short transaction per batch."""
    sealed = SealBlock.objects.exists()
    key_id, key = current_key() if sealed else ("", b"")
    result = PurgeResult(plan)
    while ids := list(
        ActionLog.objects.filter(id__lte=plan.through_id)
        .order_by("id")
        .values_list("id", flat=True)[:batch_size]
    ):
        upper = ids[-1]
        with sqlite_writer_queue(), transaction.atomic():
            delete_permit_grant("auditlog_purge")
            deleted, _ = ActionLog.objects.filter(id__lte=upper).delete()
            if sealed:
                _anchor_move(upper, deleted, key_id, key)
            delete_permit_revoke()
        result.purged += deleted
        result.batches += 1
        if progress:
            progress(result.purged)
        close_old_connections_between_units()
        time.sleep(PAUSE_BETWEEN_BATCHES)
    return result


def _anchor_move(through_id: int, deleted: int, key_id: str, key: bytes) -> None:
    """Record where the chain now starts: the link of the last purged event."""
    chain = EventSeal.objects.get(event_id=through_id).chain_hash
    EventSeal.objects.filter(event_id__lte=through_id).delete()
    anchor = SealAnchor.objects.first() or SealAnchor(purged_count=0)
    anchor.purged_through_event_id = through_id
    anchor.chain_hash = chain
    anchor.purged_count += deleted
    anchor.key_id = key_id
    anchor.mac = anchor_mac(key, anchor)
    anchor.save()
