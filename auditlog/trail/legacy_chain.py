"""The hash chain the trail was sealed with before its Merkle tree (migrations 0004 to 0008), kept
only so that migration 0009 can verify it once with its HMAC key before the tables go. Frozen:
these are the formats the stored seals were computed with (SEAL_CANONICAL_V1, BLOCK_MAC_V1 and
ANCHOR_MAC_V1 of auditlog.events.formats before 0009).

link(0) = 64 zeros; link(i) = SHA-256 hex of link(i-1) followed by event i's canonical bytes: the
compact JSON array of its columns below, UTF-8, datetimes UTC ISO 8601, UUIDs hyphenated,
metadata as its sorted compact JSON text in a string. Each block's HMAC-SHA256 covers
"block|first|last|count|previous|chain"; the purge anchor's "anchor|through|chain|count".
"""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from uuid import UUID

GENESIS = "0" * 64
FIELDS = (
    "id", "uuid", "occurred_at", "received_at", "actor_id", "actor_type", "actor_name", "action",
    "target_type", "target_id", "target_name", "outcome", "ip_address", "user_agent", "metadata",
    "source_id", "idempotency_key", "payload_hash",
)  # fmt: skip
CHUNK = 10_000


def canonical(row) -> bytes:
    values = []
    for value in row:
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        elif isinstance(value, UUID):
            value = str(value)
        elif isinstance(value, dict | list):
            value = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        values.append(value)
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def link(previous: str, row) -> str:
    return hashlib.sha256(previous.encode("ascii") + canonical(row)).hexdigest()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


def _mac(key: bytes, tag: str, *parts) -> str:
    return hmac.new(key, "|".join(map(str, (tag, *parts))).encode(), hashlib.sha256).hexdigest()


def block_mac(key: bytes, block) -> str:
    return _mac(
        key,
        "block",
        block.first_event_id,
        block.last_event_id,
        block.event_count,
        block.previous_hash,
        block.chain_hash,
    )


def anchor_mac(key: bytes, anchor) -> str:
    return _mac(key, "anchor", anchor.purged_through_event_id, anchor.chain_hash, anchor.purged_count)


def chain_problem(keys: list[str], ActionLog, EventSeal, SealBlock, SealAnchor) -> str | None:  # noqa: N803
    """None when every sealed event, seal and checkpoint holds under one of `keys`; else the
    first problem. The models are the migration's historical ones."""
    by_id = {key_id(key.encode()): key.encode() for key in keys}
    start, previous = 0, GENESIS
    anchor = SealAnchor.objects.first()
    if anchor is not None:
        key = by_id.get(anchor.key_id)
        if key is None or not hmac.compare_digest(anchor.mac, anchor_mac(key, anchor)):
            return "the purge anchor does not match its HMAC under the keys given"
        start, previous = anchor.purged_through_event_id, anchor.chain_hash
    blocks = list(SealBlock.objects.filter(last_event_id__gt=start).order_by("last_event_id"))
    for block in blocks:
        key = by_id.get(block.key_id)
        if key is None or not hmac.compare_digest(block.mac, block_mac(key, block)):
            what = f"events {block.first_event_id}-{block.last_event_id}"
            return f"the checkpoint of {what} does not match its HMAC"
    head = blocks[-1].last_event_id if blocks else start
    if EventSeal.objects.filter(event_id__gt=head).exists():
        return f"seals beyond event {head} that no checkpoint covers"
    ends = {block.last_event_id: block for block in blocks}
    cursor = start
    while cursor < head:
        rows = list(
            ActionLog.objects.filter(id__gt=cursor, id__lte=head).order_by("id").values_list(*FIELDS)[:CHUNK]
        )
        upper = rows[-1][0] if len(rows) == CHUNK else head
        seals = dict(
            EventSeal.objects.filter(event_id__gt=cursor, event_id__lte=upper).values_list(
                "event_id", "chain_hash"
            )
        )
        events = {row[0]: row for row in rows}
        for event_id in sorted(events.keys() | seals.keys()):
            if event_id not in seals:
                return f"event {event_id} was inserted out of band"
            if event_id not in events:
                return f"event {event_id} was deleted"
            previous = link(previous, events[event_id])
            if previous != seals[event_id]:
                return f"event {event_id} was modified"
            block = ends.get(event_id)
            if block is not None and previous != block.chain_hash:
                return f"events {block.first_event_id}-{block.last_event_id} were re-sealed without the key"
        cursor = upper
    return None
