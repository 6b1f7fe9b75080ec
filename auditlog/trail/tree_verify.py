"""Verify the trail's tree from the database with only the verifier keys (auditlog_verify).

One pass over the leaves in index order, recomputing each leaf from its event, the tree's
roots at every checkpoint's size (a compact range: O(log n) memory) and the stored nodes:

- an event whose fields no longer give its leaf is named (modified);
- a leaf whose event is gone and no signed retention record covers it is named (deleted);
- an event in the sealed range without a leaf is named (inserted out of band);
- a missing leaf index, a stored node that does not match its leaves, a checkpoint whose
  signature, size or root does not hold, a log that shrank, a gap between checkpoints longer
  than AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS, the latest checkpoint older than that, and events
  older than the seal bound that are not leaves yet are all problems.

What one database cannot show (its newest events removed with everything sealed about them, or
the tree rebuilt from scratch) the offline verifier shows, holding an earlier checkpoint.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from auditlog.models import ActionLog, Checkpoint, RetentionRecord, TrailLeaf, TrailNode
from auditlog.trail import leaf_rows, merkle
from auditlog.trail.note import Checkpoint as CheckpointBody
from auditlog.trail.note import NoteError, note_open, retention_leaves
from auditlog.trail.tree import TILE_HEIGHT, TrailError, trail_verifiers

CHUNK = 10_000


@dataclass
class TreeVerifyResult:
    leaves: int = 0
    checkpoints: int = 0
    purged: int = 0
    root: bytes = merkle.EMPTY_ROOT
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class CompactRange:
    """The perfect subtrees of leaves [0, size), largest first: appending a leaf merges equal
    heights, so the root of any prefix is a fold of at most log2(size) hashes."""

    def __init__(self):
        self.size = 0
        self.stack: list[tuple[int, bytes]] = []  # (height, hash)
        self.completed: list[tuple[int, int, bytes]] = []  # (height, index, hash) at multiples of 8

    def append(self, leaf_hash: bytes) -> None:
        height, value = 0, leaf_hash
        self.size += 1
        while self.stack and self.stack[-1][0] == height:
            _, left = self.stack.pop()
            value = merkle.node_hash(left, value)
            height += 1
            if height % TILE_HEIGHT == 0:
                self.completed.append((height, (self.size >> height) - 1, value))
        self.stack.append((height, value))

    def root(self) -> bytes:
        if not self.stack:
            return merkle.EMPTY_ROOT
        value = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            value = merkle.node_hash(left, value)
        return value


def _checkpoints(verifiers, result: TreeVerifyResult) -> list[tuple[int, bytes, str]]:
    """(size, signed root, name) of every checkpoint whose signature holds, in order; problems
    for the rest, for a log that shrank, and for gaps in time."""
    max_gap = settings.AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS
    checked, previous = [], None
    for checkpoint in Checkpoint.objects.order_by("id").iterator(chunk_size=2000):
        name = f"checkpoint #{checkpoint.id} ({checkpoint.tree_size} leaves)"
        try:
            body = CheckpointBody.parse(note_open(checkpoint.note, verifiers))
        except NoteError as exc:
            result.problems.append(f"{name} does not verify: {exc}")
            continue
        if body.size != checkpoint.tree_size or body.root != bytes(checkpoint.root_hash):
            result.problems.append(f"{name}: its columns differ from its signed note")
        if previous is None and body.previous is not None:
            result.problems.append(f"{name} follows a checkpoint (size {body.previous[0]}) that is missing")
        if previous is not None:
            if body.previous != (previous.size, previous.time):
                result.problems.append(
                    f"{name} does not follow the checkpoint before it: one signed between them is missing"
                )
            if body.size < previous.size:
                result.problems.append(f"{name}: the log shrank from {previous.size} to {body.size} leaves")
            if max_gap and body.time and previous.time and body.time - previous.time > max_gap:
                result.problems.append(
                    f"{name}: no checkpoint for {body.time - previous.time} s before it (at most {max_gap} s)"
                )
        checked.append((body.size, body.root, name))
        previous = body
        result.checkpoints += 1
    if previous is not None and max_gap and previous.time:
        age = int(timezone.now().timestamp()) - previous.time
        if age > max_gap:
            result.problems.append(
                f"the latest checkpoint is {age} s old (at most {max_gap} s): sealing stopped, or the newest "
                "checkpoints were removed"
            )
    return checked


def tree_verify(*, progress: Callable[[int], None] | None = None) -> TreeVerifyResult:
    verifiers = trail_verifiers()
    if not verifiers:
        raise TrailError("no verifier key: set AUDITLOG_TRAIL_VERIFIER_KEYS (or AUDITLOG_TRAIL_KEY).")
    result = TreeVerifyResult()
    pending = sorted(_checkpoints(verifiers, result), key=lambda item: item[0])
    purged_through = -1
    for record in RetentionRecord.objects.order_by("last_leaf"):
        name = f"the retention record #{record.id}"
        try:
            first, last = retention_leaves(note_open(record.note, verifiers))
        except NoteError as exc:
            result.problems.append(f"{name} does not verify: {exc}")
            continue
        if (first, last) != (record.first_leaf, record.last_leaf):
            result.problems.append(f"{name}: its columns differ from its signed note (leaves {first}-{last})")
        if first != purged_through + 1:
            result.problems.append(f"retention records skip from leaf {purged_through} to {first}")
        purged_through = max(purged_through, last)
    stored_nodes = {(h, i): bytes(v) for h, i, v in TrailNode.objects.values_list("height", "index", "hash")}
    compact = CompactRange()
    while pending and pending[0][0] == 0:  # a checkpoint signed before anything was sealed
        _, root, name = pending.pop(0)
        if root != merkle.EMPTY_ROOT:
            result.problems.append(f"{name}: an empty tree has another root")
    last_event_id = 0
    while True:
        leaves = list(
            TrailLeaf.objects.filter(leaf_index__gte=compact.size)
            .order_by("leaf_index")
            .values_list("leaf_index", "event_id", "leaf_hash")[:CHUNK]
        )
        if not leaves:
            break
        events = dict(leaf_rows.events_leaf_values(last_event_id, max(row[1] for row in leaves)))
        leaf_events = {row[1] for row in leaves}
        for event_id in sorted(set(events) - leaf_events):
            result.problems.append(
                f"event id {event_id} was inserted out of band: it lies among sealed events"
            )
        for index, event_id, stored in leaves:
            if index != compact.size:
                result.problems.append(f"leaf {compact.size} is missing (the next stored leaf is {index})")
                return result
            stored = bytes(stored)
            values = events.get(event_id)
            if values is None:
                if index > purged_through:
                    result.problems.append(
                        f"leaf {index}: event id {event_id} was deleted; no retention record covers it"
                    )
                else:
                    result.purged += 1
                value = stored
            else:
                value = merkle.leaf_hash(leaf_rows.leaf(index, values))
                if value != stored:
                    result.problems.append(
                        f"leaf {index}: event {values[0]} (id {event_id}) was modified: "
                        "its fields no longer give its leaf"
                    )
            compact.append(value)
            while pending and pending[0][0] == compact.size:
                size, root, name = pending.pop(0)
                if compact.root() != root:
                    result.problems.append(f"{name}: the events do not reproduce its root")
        last_event_id = max(last_event_id, max(row[1] for row in leaves))
        for height, index, value in compact.completed:
            if stored_nodes.get((height, index)) != value:
                result.problems.append(f"the stored node {height}/{index} does not match its leaves")
        compact.completed.clear()
        result.leaves = compact.size
        if progress:
            progress(compact.size)
    result.root = compact.root()
    for _, _, name in pending:
        result.problems.append(f"{name}: the tree has only {compact.size} leaves")
    bound = timezone.now() - timedelta(seconds=settings.AUDITLOG_SEAL_BOUND_SECONDS)
    unsealed = ActionLog.objects.filter(id__gt=last_event_id, received_at__lt=bound).count()
    if unsealed:
        result.problems.append(
            f"{unsealed} events received more than AUDITLOG_SEAL_BOUND_SECONDS "
            f"({settings.AUDITLOG_SEAL_BOUND_SECONDS} s) ago are not sealed: is auditlog_seal --follow "
            "running?"
        )
    return result
