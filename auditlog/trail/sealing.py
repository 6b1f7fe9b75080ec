"""Tamper evidence: a hash chain over events in id order, with HMAC-authenticated checkpoints.

link(i) = SHA-256(link(i-1) || canonical(event i)), stored per event (EventSeal). Every block of
events gets a checkpoint (SealBlock) whose HMAC, keyed by AUDITLOG_SEAL_KEY, covers its range
and the links before and after it: a changed, deleted or inserted event breaks the chain at
that event, and a chain recomputed without the key breaks at the checkpoint.
"""

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from auditlog.db.connections import close_old_connections_between_units
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.events.formats import ANCHOR_MAC_V1, BLOCK_MAC_V1, SEAL_CANONICAL_V1
from auditlog.models import ActionLog, EventSeal, SealAnchor, SealBlock

# The one version there is: SealBlock records no format version yet (see auditlog.events.formats).
GENESIS = SEAL_CANONICAL_V1.genesis
canonical = SEAL_CANONICAL_V1.canonical
link = SEAL_CANONICAL_V1.link
block_mac = BLOCK_MAC_V1.mac
anchor_mac = ANCHOR_MAC_V1.mac
VERIFY_CHUNK = 10_000
MSG_INSERTED = "event {id} was inserted out of band: it lies in the sealed range but has no seal"
MSG_BELOW = "event {id} was inserted out of band: the chain starts after event {start}, where nothing may be"
MSG_DELETED = "event {id} was deleted: its seal remains, the event does not"
MSG_MODIFIED = "event {id} was modified: its fields no longer match its seal"
MSG_RESEALED = "events {first}-{last} were re-sealed without the key: their checkpoint does not match"
MSG_FORGED = "{what} does not match its HMAC: the checkpoint was forged or altered"


class SealError(Exception):
    """Sealing or verifying cannot run as asked (no key, a concurrent seal)."""


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


def seal_keys() -> dict[str, bytes]:
    """The current key and the old ones still accepted, by key id."""
    keys = [settings.AUDITLOG_SEAL_KEY, *settings.AUDITLOG_SEAL_OLD_KEYS]
    return {_key_id(key.encode()): key.encode() for key in keys if key}


def current_key() -> tuple[str, bytes]:
    if not settings.AUDITLOG_SEAL_KEY:
        raise SealError("AUDITLOG_SEAL_KEY is not set: sealing needs a secret key (README: Operations).")
    key = settings.AUDITLOG_SEAL_KEY.encode()
    return _key_id(key), key


def events_rows(after_id: int, upto_id: int | None, limit: int) -> list[tuple]:
    queryset = ActionLog.objects.filter(id__gt=after_id)
    if upto_id is not None:
        queryset = queryset.filter(id__lte=upto_id)
    return list(queryset.order_by("id").values_list(*SEAL_CANONICAL_V1.fields)[:limit])


def seal_head() -> tuple[int, str]:
    """The last sealed event id and its link (0 and GENESIS when nothing is sealed)."""
    block = SealBlock.objects.order_by("-last_event_id").first()
    if block is not None:
        return block.last_event_id, block.chain_hash
    anchor = SealAnchor.objects.first()
    return (anchor.purged_through_event_id, anchor.chain_hash) if anchor else (0, GENESIS)


def seal_cutoff_id(now: datetime) -> int | None:
    """The newest id that is safe to seal: received long enough ago that every transaction
    holding a lower id has committed or failed (requests end within seconds; the delay is
    minutes). Found by reading back from the newest ids, a few minutes' worth of rows."""
    cutoff = now - timedelta(seconds=settings.AUDITLOG_SEAL_DELAY_SECONDS)
    return (
        ActionLog.objects.filter(received_at__lt=cutoff).order_by("-id").values_list("id", flat=True).first()
    )


@dataclass
class SealResult:
    sealed: int = 0
    blocks: int = 0
    head_id: int = 0


def events_seal(*, block_size: int = 5000, progress: Callable[[int], None] | None = None) -> SealResult:
    """Seal every event not sealed yet and old enough, one block (one transaction) at a time.

    Idempotent and resumable: it continues from the last checkpoint. Ingest never waits on it
    for longer than one block's insert of seal rows (events themselves are only read).
    """
    key_id, key = current_key()
    upto = seal_cutoff_id(timezone.now())
    last_id, previous = seal_head()
    result = SealResult(head_id=last_id)
    while upto is not None and (rows := events_rows(last_id, upto, block_size)):
        chain, seals = previous, []
        for row in rows:
            chain = link(chain, row)
            seals.append(EventSeal(event_id=row[0], chain_hash=chain))
        block = SealBlock(
            first_event_id=rows[0][0],
            last_event_id=rows[-1][0],
            event_count=len(rows),
            previous_hash=previous,
            chain_hash=chain,
            key_id=key_id,
        )
        block.mac = block_mac(key, block)
        try:
            with sqlite_writer_queue(), transaction.atomic():
                EventSeal.objects.bulk_create(seals, batch_size=500)
                block.save()
        except IntegrityError:
            raise SealError(
                "Another auditlog_seal sealed these events at the same time; run it again."
            ) from None
        last_id, previous = block.last_event_id, chain
        result.sealed += len(rows)
        result.blocks += 1
        result.head_id = last_id
        if progress:
            progress(result.sealed)
        close_old_connections_between_units()
    return result


@dataclass
class Break:
    """The first place where the stored trail and its seals disagree."""

    event_id: int | None
    message: str


@dataclass
class VerifyResult:
    verified: int = 0
    blocks: int = 0
    head_id: int = 0
    head_hash: str = GENESIS
    problem: Break | None = None


def chain_verify(
    *, since: datetime | None = None, progress: Callable[[int], None] | None = None
) -> VerifyResult:
    """Recompute the chain from the purge anchor (or the genesis, or the checkpoint before
    `since`) and compare every link and checkpoint. Stops at the first break."""
    keys = seal_keys()
    if not keys:
        raise SealError("AUDITLOG_SEAL_KEY is not set: verifying needs the key the trail was sealed with.")
    result = VerifyResult()
    start_id, previous = 0, GENESIS
    anchor = SealAnchor.objects.first()
    if anchor is not None:
        if (problem := _mac_problem(keys, anchor, anchor_mac, "the purge anchor")) is not None:
            result.problem = problem
            return result
        start_id, previous = anchor.purged_through_event_id, anchor.chain_hash
    below = ActionLog.objects.filter(id__lte=start_id).order_by("id").values_list("id", flat=True).first()
    if below is not None:  # nothing may exist at or below where the chain starts (genesis or purge)
        result.problem = Break(below, MSG_BELOW.format(id=below, start=start_id))
        return result
    blocks = list(SealBlock.objects.filter(last_event_id__gt=start_id).order_by("last_event_id"))
    if since is not None:
        first_since = (
            ActionLog.objects.filter(received_at__gte=since)
            .order_by("id")
            .values_list("id", flat=True)
            .first()
        )
        blocks = [block for block in blocks if first_since is not None and block.last_event_id >= first_since]
        if blocks and blocks[0].first_event_id > start_id:
            start_id, previous = blocks[0].first_event_id - 1, blocks[0].previous_hash
    for block in blocks:
        if (
            problem := _mac_problem(
                keys,
                block,
                block_mac,
                f"the checkpoint of events {block.first_event_id}-{block.last_event_id}",
            )
        ) is not None:
            result.problem = problem
            return result
    head_id = blocks[-1].last_event_id if blocks else start_id
    stray = (
        EventSeal.objects.filter(event_id__gt=head_id)
        .order_by("event_id")
        .values_list("event_id", flat=True)
        .first()
    )
    if stray is not None:
        result.problem = Break(
            stray, f"event {stray} has a seal but no checkpoint covers it: seals were forged"
        )
        return result
    result.problem, result.verified, previous = _walk(start_id, head_id, previous, blocks, progress)
    result.blocks, result.head_id, result.head_hash = len(blocks), head_id, previous
    return result


def _mac_problem(keys, record, mac_function, what) -> Break | None:
    key = keys.get(record.key_id)
    if key is None:
        return Break(
            None,
            f"{what} was sealed with key {record.key_id}, which is not configured (AUDITLOG_SEAL_OLD_KEYS)",
        )
    if not hmac.compare_digest(record.mac, mac_function(key, record)):
        return Break(None, MSG_FORGED.format(what=what))
    return None


def _walk(start_id, head_id, previous, blocks, progress):
    """Merge the events and the seals in id order, recomputing every link."""
    pending = iter(blocks)
    block = next(pending, None)
    cursor, verified = start_id, 0
    while cursor < head_id:
        rows = events_rows(cursor, head_id, VERIFY_CHUNK)
        upper = rows[-1][0] if len(rows) == VERIFY_CHUNK else head_id
        seals = dict(
            EventSeal.objects.filter(event_id__gt=cursor, event_id__lte=upper).values_list(
                "event_id", "chain_hash"
            )
        )
        events = {row[0]: row for row in rows}
        for event_id in sorted(events.keys() | seals.keys()):
            if event_id not in seals:
                return Break(event_id, MSG_INSERTED.format(id=event_id)), verified, previous
            if event_id not in events:
                return Break(event_id, MSG_DELETED.format(id=event_id)), verified, previous
            chain = link(previous, events[event_id])
            if chain != seals[event_id]:
                return Break(event_id, MSG_MODIFIED.format(id=event_id)), verified, previous
            previous, verified = chain, verified + 1
            if block is not None and event_id == block.last_event_id:
                if chain != block.chain_hash:
                    message = MSG_RESEALED.format(first=block.first_event_id, last=block.last_event_id)
                    return Break(block.last_event_id, message), verified, previous
                block = next(pending, None)
        cursor = upper
        if progress:
            progress(verified)
        close_old_connections_between_units()
    return None, verified, previous
