"""Retention: remove the oldest events, keeping the trail's tree verifiable. Only events that are
leaves go; the tree keeps every leaf (it never shrinks), and each step signs a retention record
naming the leaves whose events it removed, so a verifier tells a purge from a deletion.

On PostgreSQL a partition (auditlog.db.partitions) wholly older than the cutoff goes whole:
archived first when asked (gzipped JSON Lines, read back and counted), its record signed, then
DETACH PARTITION ... CONCURRENTLY (ingest and reads go on) and DROP TABLE, milliseconds where
deleting its rows took minutes. What is left older than the cutoff (the boundary partition's
part, or everything on SQLite) goes in short batches of DELETE. The events' idempotency keys
(EventKey) go with them.

Leaves are in id order, and partitions by received_at: the two agree but for events received at
the same moment around a boundary, committed out of order. A record names every leaf up to the
newest the step removed, so such a neighbour's leaf may fall inside a record while its event is
still there: verifiers check a present event against its leaf wherever it is.
"""

import gzip
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone

from auditlog.db.connections import close_old_connections_between_units
from auditlog.db.partitions import EVENTS, Partition, events_partitioned, partitions_list
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.models import ActionLog, EventKey, RetentionRecord, TrailLeaf
from auditlog.reading.export import events_jsonl_lines
from auditlog.trail.append_only import delete_permit_grant, delete_permit_revoke
from auditlog.trail.note import Signer
from auditlog.trail.tree import TrailError, trail_signer

PAUSE_BETWEEN_BATCHES = 0.01  # seconds: lets waiting writers in between batches


@dataclass
class PartitionPurge:
    partition: Partition
    count: int
    last_id: int  # its newest event's id (0: empty)


@dataclass
class PurgePlan:
    cutoff: datetime
    through_id: int  # delete ids <= this (0: nothing)
    count: int  # events the batches delete
    unsealed_old: int  # old enough to go, but not sealed yet: kept until sealed
    policy: str = ""
    partitions: list[PartitionPurge] = field(default_factory=list)  # dropped whole, oldest first

    @property
    def total(self) -> int:
        return self.count + sum(part.count for part in self.partitions)


@dataclass
class PurgeResult:
    plan: PurgePlan
    purged: int = 0
    batches: int = 0
    partitions: int = 0
    archived: list[Path] = field(default_factory=list)


def events_purge_plan(*, older_than_days: int, whole_partitions: bool = True) -> PurgePlan:
    """Which events go: whole partitions older than the cutoff, then a prefix of ids received
    before it (received_at is server time, in step with ids; client-supplied occurred_at is
    not). Once the trail has a tree, only its leaves go: an event not sealed yet waits for
    auditlog_seal, and so does its partition."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    last_leaf = TrailLeaf.objects.order_by("-leaf_index").values_list("event_id", flat=True).first()
    partitions = []
    if whole_partitions and events_partitioned():
        for part in partitions_list():
            if part.upper > cutoff:
                break
            count, last_id = _partition_size(part)
            if last_leaf is not None and last_id > last_leaf:
                break  # not all sealed yet: it and the later ones wait
            partitions.append(PartitionPurge(part, count, last_id))
    first_kept = (
        ActionLog.objects.filter(received_at__gte=cutoff).order_by("id").values_list("id", flat=True).first()
    )
    if first_kept is None:
        through = ActionLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    else:
        through = first_kept - 1
    old_enough = through
    if last_leaf is not None:
        through = min(through, last_leaf)
    unsealed_old = (
        ActionLog.objects.filter(id__gt=through, id__lte=old_enough).count() if through < old_enough else 0
    )
    batched = ActionLog.objects.filter(id__lte=through)
    if partitions:  # what the drops remove is not the batches' to count
        batched = batched.filter(received_at__gte=partitions[-1].partition.upper)
    return PurgePlan(
        cutoff,
        through,
        batched.count(),
        unsealed_old,
        f"events received more than {older_than_days} days ago",
        partitions,
    )


def _partition_size(part: Partition) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), coalesce(max(id), 0) FROM {connection.ops.quote_name(part.name)}")
        return cursor.fetchone()


def events_purge(
    plan: PurgePlan,
    *,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    archive_dir: Path | None = None,
) -> PurgeResult:
    """Remove the plan's events, oldest first: whole partitions, then one short transaction per
    batch."""
    signer = None
    if TrailLeaf.objects.exists():
        signer = trail_signer()
        if signer is None:
            raise TrailError(
                "AUDITLOG_TRAIL_KEY is not set: a purge signs a retention record of what it removes."
            )
    result = PurgeResult(plan)
    for part in plan.partitions:
        if archive_dir is not None:
            result.archived.append(partition_archive(part, archive_dir))
        if signer is not None and part.last_id:
            retention_record(signer, part.last_id, part.count, plan)
        partition_drop(part.partition, batch_size)
        result.purged += part.count
        result.partitions += 1
        if progress:
            progress(result.purged)
    while ids := list(
        ActionLog.objects.filter(id__lte=plan.through_id)
        .order_by("id")
        .values_list("id", flat=True)[:batch_size]
    ):
        upper = ids[-1]
        with sqlite_writer_queue(), transaction.atomic():
            delete_permit_grant("auditlog_purge")
            _keys_delete_of_events(upper)
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


def _keys_delete_of_events(through_id: int) -> None:
    """The idempotency keys of the events with ids up to through_id (found by its primary key)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {EventKey._meta.db_table} WHERE (source_id, idempotency_key) IN"
            f" (SELECT source_id, idempotency_key FROM {EVENTS}"
            " WHERE id <= %s AND idempotency_key IS NOT NULL)",
            [through_id],
        )


def partition_archive(part: PartitionPurge, directory: Path) -> Path:
    """The partition's events as gzipped JSON Lines (the export's format), written to a
    temporary name, synced, read back and counted, then renamed: a file that exists is whole."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{part.partition.name}.jsonl.gz"
    partial = path.with_name(path.name + ".partial")
    events = (
        ActionLog.objects.select_related("source")
        .filter(received_at__gte=part.partition.lower, received_at__lt=part.partition.upper)
        .order_by("id")
    )
    with open(partial, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as file:
            for line in events_jsonl_lines(events.iterator(chunk_size=5000)):
                file.write(line.encode())
        raw.flush()
        os.fsync(raw.fileno())
    with gzip.open(partial, "rb") as file:
        lines = sum(1 for _ in file)
    if lines != part.count:
        raise TrailError(
            f"the archive of {part.partition.name} holds {lines} events, the partition {part.count}: nothing "
            "was removed"
        )
    os.replace(partial, path)
    return path


def partition_drop(part: Partition, batch_size: int) -> None:
    """Remove the partition's events' idempotency keys, detach it without stopping ingest or
    reads (CONCURRENTLY waits for the queries using it), and drop it at once: an interruption
    leaves it attached (a detach half-way is finished with FINALIZE next time), or gone."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        keys = EventKey._meta.db_table
        while True:
            cursor.execute(
                f"DELETE FROM {keys} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {keys}"
                " WHERE received_at >= %s AND received_at < %s LIMIT %s))",
                [part.lower, part.upper, batch_size * 10],
            )
            if not cursor.rowcount:
                break
        cursor.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass", [part.name])
        row = cursor.fetchone()
        if row is not None:
            # CONCURRENTLY cannot run inside a caller's transaction: there the plain DETACH
            # (ACCESS EXCLUSIVE, for a moment) does; its inserts' deferred foreign key checks
            # run now, as DROP refuses a table with pending ones.
            how = "FINALIZE" if row[0] else "" if connection.in_atomic_block else "CONCURRENTLY"
            if connection.in_atomic_block:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {EVENTS} DETACH PARTITION {quote(part.name)} {how}")
        cursor.execute(f"DROP TABLE {quote(part.name)}")


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
