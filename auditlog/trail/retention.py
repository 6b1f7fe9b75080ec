"""Retention: delete the oldest events in short batches, keeping the trail's tree verifiable. Only
events that are leaves go; the tree keeps every leaf (it never shrinks), and each batch signs a
retention record naming the leaves whose events it removed, so a verifier tells a purge from a
deletion."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from auditlog.db.connections import close_old_connections_between_units
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.models import ActionLog, RetentionRecord, TrailLeaf
from auditlog.trail.append_only import delete_permit_grant, delete_permit_revoke
from auditlog.trail.note import Signer
from auditlog.trail.tree import TrailError, trail_signer

PAUSE_BETWEEN_BATCHES = 0.01  # seconds: lets waiting writers in between batches


@dataclass
class PurgePlan:
    cutoff: datetime
    through_id: int  # delete ids <= this (0: nothing)
    count: int
    unsealed_old: int  # old enough to go, but not sealed yet: kept until sealed
    policy: str = ""


@dataclass
class PurgeResult:
    plan: PurgePlan
    purged: int = 0
    batches: int = 0


def events_purge_plan(*, older_than_days: int) -> PurgePlan:
    """Which events go: a prefix of ids received before the cutoff (received_at is server time,
    in step with ids; client-supplied occurred_at is not). Once the trail has a tree, only its
    leaves go: an event not sealed yet waits for auditlog_seal."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    first_kept = (
        ActionLog.objects.filter(received_at__gte=cutoff).order_by("id").values_list("id", flat=True).first()
    )
    if first_kept is None:
        through = ActionLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    else:
        through = first_kept - 1
    old_enough = through
    last_leaf = TrailLeaf.objects.order_by("-leaf_index").values_list("event_id", flat=True).first()
    if last_leaf is not None:
        through = min(through, last_leaf)
    unsealed_old = (
        ActionLog.objects.filter(id__gt=through, id__lte=old_enough).count() if through < old_enough else 0
    )
    count = ActionLog.objects.filter(id__lte=through).count()
    return PurgePlan(
        cutoff, through, count, unsealed_old, f"events received more than {older_than_days} days ago"
    )


def events_purge(
    plan: PurgePlan, *, batch_size: int, progress: Callable[[int], None] | None = None
) -> PurgeResult:
    """Delete the plan's events, oldest first, one short transaction per batch."""
    signer = None
    if TrailLeaf.objects.exists():
        signer = trail_signer()
        if signer is None:
            raise TrailError(
                "AUDITLOG_TRAIL_KEY is not set: a purge signs a retention record of what it removes."
            )
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
            if signer is not None:
                retention_record(signer, upper, deleted, plan)
            delete_permit_revoke()
        result.purged += deleted
        result.batches += 1
        if progress:
            progress(result.purged)
        close_old_connections_between_units()
        time.sleep(PAUSE_BETWEEN_BATCHES)
    return result


def retention_record(
    signer: Signer, through_event_id: int, purged: int, plan: PurgePlan
) -> RetentionRecord | None:
    """Sign and store the record of one batch: the leaves whose events it removed."""
    last = TrailLeaf.objects.filter(event_id__lte=through_event_id).order_by("-leaf_index").first()
    previous = RetentionRecord.objects.order_by("-last_leaf").values_list("last_leaf", flat=True).first()
    first_leaf = 0 if previous is None else previous + 1
    if last is None or last.leaf_index < first_leaf:
        return None
    now = timezone.now()
    body = (
        "auditlog retention record v1\n"
        f"origin {signer.name}\n"
        f"leaves {first_leaf}-{last.leaf_index}\n"
        f"events {purged}\n"
        f"cutoff {plan.cutoff.isoformat()}\n"
        f"policy {plan.policy}\n"
        f"time {int(now.timestamp())}\n"
    )
    return RetentionRecord.objects.create(
        first_leaf=first_leaf,
        last_leaf=last.leaf_index,
        purged_count=purged,
        cutoff=plan.cutoff,
        policy=plan.policy,
        note=signer.sign(body),
        created_at=now,
    )
