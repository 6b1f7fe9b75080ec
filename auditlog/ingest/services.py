"""Writes. Every multi-statement write is one transaction (IMMEDIATE on SQLite)."""

import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from auditlog.db.partitions import ingest_partitions
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.events.definition import FIELDS
from auditlog.events.uuid7 import uuid7
from auditlog.events.validation import EventInput, event_input_from
from auditlog.http.client_ip import client_ip
from auditlog.ingest.group_commit import group_commit
from auditlog.ingest.storage import EventRows, events_insert, events_insert_new
from auditlog.keys.tokens import token_generate, token_hash
from auditlog.models import ActionLog, ApiKey
from auditlog.reading.selectors import KeyHolder, events_get_by_idempotency_keys

logger = logging.getLogger(__name__)
# A concurrent batch with the same idempotency key can win the race on PostgreSQL between our
# lookup and our insert; the retry then finds its row. SQLite serialises batches (IMMEDIATE).
BATCH_ATTEMPTS = 3

MSG_KEY_HOLDER_GONE = "The event holding this idempotency key was removed meanwhile; retry."

CREATED = 201
REPLAYED = 200
CONFLICT = 409


class IdempotencyConflict(Exception):
    """The idempotency key was already used by this source with a different event body."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the API acknowledges of a new event; a stored ActionLog answers the same."""

    uuid: UUID
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EventOutcome:
    status: int  # CREATED, REPLAYED or CONFLICT
    event: StoredEvent | KeyHolder | None


# What a validated event gives the model as it is: every column EventInput holds (metadata as
# the dict the model's JSONField takes).
_EVENT_COLUMNS = tuple(name for name in EventInput._fields if name in FIELDS)


def _event_build(source: ApiKey, event: EventInput, received_at: datetime) -> ActionLog:
    values = {name: getattr(event, name) for name in _EVENT_COLUMNS}
    values["occurred_at"] = event.occurred_at or received_at
    return ActionLog(**values, received_at=received_at, source=source)


def event_create(*, source: ApiKey, event: EventInput) -> EventOutcome:
    """Store one event, or return the original for a replayed idempotency key.

    Insert first and look up only when the key was taken: one statement in the common case and
    no read-then-write window. Concurrent calls in one process share that statement (group
    commit: auditlog.ingest.group_commit); inside a caller's transaction the event is inserted there,
    alone. Raises IdempotencyConflict when the key was used for another body.
    """
    received_at = timezone.now()
    ingest_partitions.ready(received_at)
    stored = StoredEvent(uuid7(), received_at)
    row = EventRows(received_at=received_at, source_id=source.pk).row(event, stored.uuid)
    if connection.in_atomic_block:
        with sqlite_writer_queue():
            created = events_insert_new([row])
    else:
        created = group_commit.insert(row)
    if created:
        return EventOutcome(CREATED, stored)
    original = events_get_by_idempotency_keys(source=source, keys=[event.idempotency_key]).get(
        event.idempotency_key
    )
    if original is None:  # purged between the insert and this lookup: a retry stores it
        raise OperationalError(MSG_KEY_HOLDER_GONE)
    if original.payload_hash != event.payload_hash:
        raise IdempotencyConflict
    return EventOutcome(REPLAYED, original)


def events_create_batch(*, source: ApiKey, events: list[EventInput]) -> list[EventOutcome]:
    """Store a batch in one transaction with one statement; one outcome per event, in order.

    Optimistic first, as for one event: COPY (PostgreSQL) or executemany (SQLite) every event
    with no lookup, which is right unless the batch is a retry. When a key is taken already,
    that statement fails, the transaction rolls back and the batch goes again the careful
    way: look its keys up and store the new events only. (Looking 1,000 keys up cost more
    than the insert itself, and PostgreSQL plans it as a table scan until the table is large.)
    """
    ingest_partitions.ready(timezone.now())
    with sqlite_writer_queue():
        if _keys_distinct(events):
            try:
                with transaction.atomic():
                    return _batch_insert_all(source, events, timezone.now())
            except IntegrityError:
                pass  # some of it is a retry: take the careful way
        for _ in range(BATCH_ATTEMPTS - 1):
            try:
                with transaction.atomic():
                    return _batch_insert(source, events, timezone.now())
            except IntegrityError:
                continue  # lost a key race: the next attempt sees the winner's row
        with transaction.atomic():
            return _batch_insert(source, events, timezone.now())


def _keys_distinct(events: list[EventInput]) -> bool:
    keys = [event.idempotency_key for event in events if event.idempotency_key is not None]
    return len(keys) == len(set(keys))


def _batch_insert_all(source: ApiKey, events: list[EventInput], received_at: datetime) -> list[EventOutcome]:
    make = EventRows(received_at=received_at, source_id=source.pk)
    stored = [StoredEvent(uuid7(), received_at) for _ in events]
    events_insert([make.row(event, new.uuid) for event, new in zip(events, stored, strict=True)])
    return [EventOutcome(CREATED, new) for new in stored]


def _batch_insert(source: ApiKey, events: list[EventInput], received_at: datetime) -> list[EventOutcome]:
    keys = {event.idempotency_key for event in events if event.idempotency_key is not None}
    known = events_get_by_idempotency_keys(source=source, keys=keys) if keys else {}
    outcomes, rows, make = [], [], EventRows(received_at=received_at, source_id=source.pk)
    for event in events:
        original = known.get(event.idempotency_key) if event.idempotency_key is not None else None
        if original is not None:
            status = REPLAYED if original.payload_hash == event.payload_hash else CONFLICT
            outcomes.append(EventOutcome(status, original if status == REPLAYED else None))
            continue
        stored = StoredEvent(uuid7(), received_at)
        if event.idempotency_key is not None:  # a repeat later in this batch replays it
            known[event.idempotency_key] = KeyHolder(stored.uuid, stored.received_at, event.payload_hash)
        rows.append(make.row(event, stored.uuid))
        outcomes.append(EventOutcome(CREATED, stored))
    if rows:
        events_insert(rows)
    return outcomes


INTERNAL_SOURCE_NAME = "auditlog-internal"


def internal_source() -> ApiKey:
    """The source of events this service records about itself. Revoked from birth: no token
    can ever authenticate as it."""
    key = ApiKey.objects.filter(name=INTERNAL_SOURCE_NAME, scopes="").first()
    if key is None:
        prefix, token = token_generate()
        key = ApiKey.objects.create(
            name=INTERNAL_SOURCE_NAME,
            prefix=prefix,
            key_hash=token_hash(token),
            scopes="",
            revoked_at=timezone.now(),
        )
    return key


def event_record_internal(
    *,
    action: str,
    actor_id: str,
    request=None,
    actor_type: str = "staff",
    target_type: str = "",
    target_id: str = "",
    outcome: str = "success",
    metadata: dict | None = None,
) -> ActionLog:
    """Record what happened in this service itself: a person's admin logins, event views and
    exports (with the request), or an operator command's work (without)."""
    now = timezone.now()
    event = event_input_from(
        {
            "action": action,
            "actor_id": actor_id,
            "actor_type": actor_type,
            "target_type": target_type,
            "target_id": target_id,
            "occurred_at": now,
            "outcome": outcome,
            "ip_address": client_ip(request) if request else None,
            "user_agent": request.headers.get("User-Agent", "") if request else "",
            "metadata": metadata or {},
        }
    )
    log = _event_build(internal_source(), event, now)
    ingest_partitions.ready(now)
    with sqlite_writer_queue():
        log.save(force_insert=True)
    return log
