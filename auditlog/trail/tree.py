"""The trail as an RFC 9162 Merkle tree in the database, with signed checkpoints.

Events become leaves in id order, once old enough that no lower id can still commit (the seal
delay): leaf i is LEAF_V1 of event i's fields and i (auditlog.events.formats).
TrailLeaf keeps each leaf's hash, TrailNode the hash of every complete subtree whose height is a
multiple of 8, so any node of any tree size is at most 128 stored hashes away: proofs read a
few hundred rows at most. A Checkpoint is a C2SP tlog-checkpoint of the tree's size and root,
signed with the trail key (AUDITLOG_TRAIL_KEY) in a C2SP signed note (auditlog.trail.note).
docs/trail-format.md describes all of it for an outside verifier.
"""

import gc
import itertools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from auditlog.db.connections import close_old_connections_between_units
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.events.formats import LEAF_V1
from auditlog.models import ActionLog, Checkpoint, TrailLeaf, TrailNode
from auditlog.trail import leaf_rows, merkle
from auditlog.trail.leaf_rows import LEAF_COLUMNS, events_leaf_values
from auditlog.trail.note import Checkpoint as CheckpointBody
from auditlog.trail.note import NoteError, Signer, Verifier, verifiers_of

TILE_HEIGHT = 8  # a TrailNode every 8 levels
LEAF_TABLE = f"{TrailLeaf._meta.db_table} (leaf_index, event_id, leaf_hash)"


class TrailError(Exception):
    """The tree cannot be read or extended as asked (a missing hash, no key, a concurrent seal)."""


# --- keys -------------------------------------------------------------------------------------


def trail_signer() -> Signer | None:
    """The key that signs checkpoints: AUDITLOG_TRAIL_KEY, or the file AUDITLOG_TRAIL_KEY_FILE
    names (never the database). None when neither is set."""
    text = settings.AUDITLOG_TRAIL_KEY
    if not text and settings.AUDITLOG_TRAIL_KEY_FILE:
        try:
            text = Path(settings.AUDITLOG_TRAIL_KEY_FILE).read_text()
        except OSError as exc:
            raise TrailError(f"AUDITLOG_TRAIL_KEY_FILE: {exc}") from None
    if not text:
        return None
    try:
        return Signer.parse(text)
    except NoteError as exc:
        raise TrailError(f"AUDITLOG_TRAIL_KEY: {exc}") from None


def trail_verifiers() -> list[Verifier]:
    """The verifier keys checkpoints may be signed with: the signer key's, when this process
    has it, and AUDITLOG_TRAIL_VERIFIER_KEYS (earlier keys; all of them where the signer key is
    not at hand)."""
    signer = trail_signer()
    try:
        return verifiers_of(signer, settings.AUDITLOG_TRAIL_VERIFIER_KEYS)
    except NoteError as exc:
        raise TrailError(f"AUDITLOG_TRAIL_VERIFIER_KEYS: {exc}") from None


# --- reading the stored tree ------------------------------------------------------------------


class StoredTree:
    """merkle.NodeReader over TrailLeaf and TrailNode, fetching each run of hashes a node needs
    in one query, and remembering what it read or was told (one instance per request or per
    seal block)."""

    def __init__(self):
        self.known: dict[tuple[int, int], bytes] = {}

    def read(self, height: int, index: int) -> bytes:
        known = self.known.get((height, index))
        if known is not None:
            return known
        base = height - height % TILE_HEIGHT
        hashes = self.hashes(base, index << (height - base), 1 << (height - base))
        value = hashes[0] if len(hashes) == 1 else merkle.root_of(hashes)
        self.known[(height, index)] = value
        return value

    def hashes(self, height: int, first: int, count: int) -> list[bytes]:
        """The hashes of nodes first..first+count-1 at a stored height (0 or a multiple of 8)."""
        found = [self.known.get((height, first + i)) for i in range(count)]
        if None in found:
            if height == 0:
                rows = TrailLeaf.objects.filter(leaf_index__gte=first, leaf_index__lt=first + count)
                stored = dict(rows.values_list("leaf_index", "leaf_hash"))
            else:
                rows = TrailNode.objects.filter(height=height, index__gte=first, index__lt=first + count)
                stored = dict(rows.values_list("index", "hash"))
            found = [value if value is not None else stored.get(first + i) for i, value in enumerate(found)]
            if None in found:
                raise TrailError(
                    f"the stored tree lacks hashes at height {height}, {first}..{first + count - 1}"
                )
        return [bytes(value) for value in found]


def tree_size_now() -> int:
    last = TrailLeaf.objects.order_by("-leaf_index").values_list("leaf_index", flat=True).first()
    return 0 if last is None else last + 1


def checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-id").first()


# --- sealing into the tree --------------------------------------------------------------------


@dataclass
class TreeResult:
    sealed: int = 0
    tree_size: int = 0
    checkpoint: Checkpoint | None = None
    # The checkpoint was signed with another key than the one before it (the first key, or a
    # rotation): that one's key id, "" for the first checkpoint.
    key_changed_from: str | None = None


def _nodes_completed(size_before: int, size_after: int, tree: StoredTree) -> list[TrailNode]:
    """The TrailNodes that growing the tree from size_before to size_after leaves completes."""
    nodes = []
    height = TILE_HEIGHT
    while size_after >> height:
        for index in range(size_before >> height, size_after >> height):
            width = 1 << TILE_HEIGHT
            value = merkle.root_of(tree.hashes(height - TILE_HEIGHT, index * width, width))
            tree.known[(height, index)] = value
            nodes.append(TrailNode(height=height, index=index, hash=value))
        height += TILE_HEIGHT
    return nodes


def seal_cutoff_id(now: datetime) -> int | None:
    """The newest id that is safe to seal: received AUDITLOG_SEAL_DELAY_SECONDS ago or more, when
    every transaction holding a lower id has committed or failed (a request's database work is
    bounded by DATABASE_REQUEST_TIMEOUT and the server's timeouts, seconds; the delay is more).
    Found by reading back from the newest ids: a delay's worth of rows."""
    cutoff = now - timedelta(seconds=settings.AUDITLOG_SEAL_DELAY_SECONDS)
    return (
        ActionLog.objects.filter(received_at__lt=cutoff).order_by("-id").values_list("id", flat=True).first()
    )


def _event_ids(after_id: int, upto_id: int, limit: int) -> list[int]:
    return list(
        ActionLog.objects.filter(id__gt=after_id, id__lte=upto_id)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def leaf_hashes(first_index: int, after_id: int, upto_id: int) -> list[tuple[int, bytes]]:
    """(id, leaf hash) of the events after_id < id <= upto_id, in id order, the first of them
    at leaf first_index."""
    # Thousands of small lists and dicts, none in a cycle: the collector's passes over them
    # were a tenth of the work (measured), and it has nothing to find.
    collecting = gc.isenabled()
    gc.disable()
    try:
        rows = events_leaf_values(after_id, upto_id)
        return [
            (event_id, merkle.leaf_hash(leaf_rows.leaf(first_index + i, values)))
            for i, (event_id, values) in enumerate(rows)
        ]
    finally:
        if collecting:
            gc.enable()


def _leaf_hashes_in_worker(first_index: int, after_id: int, upto_id: int) -> list[tuple[int, bytes]]:
    try:
        return leaf_hashes(first_index, after_id, upto_id)
    finally:
        connections.close_all()  # its own connection, opened for this part: not left behind


class LeafHasher:
    """Leaf hashes of blocks of events, in this process or, with `workers` > 1 and a block of
    at least PARALLEL_MIN events, split over that many processes (each reading its part of the
    block on its own connection): hashing is most of sealing's and verifying's work, and one
    process uses one core. The processes are forked once, on the first block that needs them,
    after this process has closed its connections (no connection crosses a fork), and stop
    when the `with` block ends."""

    PARALLEL_MIN = 10_000

    def __init__(self, workers: int = 1):
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        return False

    def submit(self, first_index: int, after_id: int, ids: list[int]) -> Callable[[], list[bytes]]:
        """Start hashing the events `ids` (every event after after_id up to ids[-1]), the first
        at leaf first_index; the call returned gives their hashes, in order."""
        parts = self._parts(after_id, ids)
        if self.pool is None and len(parts) > 1:
            if connection.in_atomic_block:  # a caller's transaction: other processes cannot see it
                parts = [(0, after_id, ids[-1])]
            else:
                connections.close_all()
                if getattr(connection, "pool", None) is not None:
                    connection.close_pool()
                self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))
        if len(parts) == 1:
            done = leaf_hashes(first_index, after_id, ids[-1])
            return lambda: self._checked(ids, done)
        futures = [
            self.pool.submit(_leaf_hashes_in_worker, first_index + start, part_after, part_upto)
            for start, part_after, part_upto in parts
        ]
        return lambda: self._checked(ids, [pair for future in futures for pair in future.result()])

    def _parts(self, after_id: int, ids: list[int]) -> list[tuple[int, int, int]]:
        """(offset, after id, last id) of each process's share of the block."""
        count = self.workers if self.workers > 1 and len(ids) >= self.PARALLEL_MIN else 1
        bounds = [len(ids) * k // count for k in range(count + 1)]
        return [
            (start, ids[start - 1] if start else after_id, ids[end - 1])
            for start, end in itertools.pairwise(bounds)
        ]

    @staticmethod
    def _checked(ids: list[int], pairs: list[tuple[int, bytes]]) -> list[bytes]:
        if [event_id for event_id, _ in pairs] != ids:
            raise TrailError("Events changed while they were being sealed (a purge?); run it again.")
        return [value for _, value in pairs]


def leaves_append(
    *,
    upto_id: int | None,
    block_size: int,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> TreeResult:
    """Append every event with an id up to `upto_id` that is not a leaf yet, in id order, one
    block (one transaction) at a time, with the nodes each block completes; the next block is
    hashed (by `workers` processes: LeafHasher) while this one is written. Signs nothing."""
    last = TrailLeaf.objects.order_by("-leaf_index").values_list("leaf_index", "event_id").first()
    size, last_id = (0, 0) if last is None else (last[0] + 1, last[1])
    result = TreeResult(tree_size=size)
    if upto_id is None:
        return result
    with LeafHasher(workers) as hasher:
        ids = _event_ids(last_id, upto_id, block_size)
        hashes = hasher.submit(size, last_id, ids) if ids else None
        while ids:
            next_ids = _event_ids(ids[-1], upto_id, block_size)
            next_hashes = hasher.submit(size + len(ids), ids[-1], next_ids) if next_ids else None
            tree = StoredTree()
            leaves = []
            for i, (event_id, value) in enumerate(zip(ids, hashes(), strict=True)):
                tree.known[(0, size + i)] = value
                leaves.append((size + i, event_id, value))
            try:
                with sqlite_writer_queue(), transaction.atomic():
                    _leaves_insert(leaves)
                    TrailNode.objects.bulk_create(_nodes_completed(size, size + len(leaves), tree))
            except IntegrityError:
                raise TrailError(
                    "Another auditlog_seal sealed these events at the same time; run it again."
                ) from None
            size += len(leaves)
            result.sealed += len(leaves)
            result.tree_size = size
            if progress:
                progress(result.sealed)
            close_old_connections_between_units()
            ids, hashes = next_ids, next_hashes
    return result


def _leaves_insert(leaves: list[tuple[int, int, bytes]]) -> None:
    """Below the ORM, a block of thousands of three-column rows: COPY on PostgreSQL, executemany
    on SQLite (as the API's batches, auditlog.ingest.storage)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with connection.wrap_database_errors, cursor.copy(f"COPY {LEAF_TABLE} FROM STDIN") as copy:
                for leaf in leaves:
                    copy.write_row(leaf)
        else:
            cursor.executemany(f"INSERT INTO {LEAF_TABLE} VALUES (%s, %s, %s)", leaves)


def tree_append(
    *,
    upto_id: int | None,
    block_size: int,
    progress: Callable[[int], None] | None = None,
    checkpoint_after: float = 0,
    workers: int = 1,
) -> TreeResult:
    """leaves_append, then sign a checkpoint of the new size: when leaves were added, and
    otherwise when the latest checkpoint is `checkpoint_after` seconds old or more (0: always),
    so that a quiet log still shows it is alive."""
    signer = trail_signer()
    if signer is None:
        raise TrailError("AUDITLOG_TRAIL_KEY is not set: `manage.py auditlog_keygen` makes one.")
    result = leaves_append(upto_id=upto_id, block_size=block_size, progress=progress, workers=workers)
    latest = checkpoint_latest()
    stale = latest is None or (timezone.now() - latest.created_at).total_seconds() >= checkpoint_after
    if result.sealed or stale or latest.tree_size != result.tree_size:
        result.checkpoint = checkpoint_sign(signer, result.tree_size)
        if latest is None or latest.key_id != result.checkpoint.key_id:
            result.key_changed_from = latest.key_id if latest else ""
    return result


def checkpoint_sign(signer: Signer, size: int, now: datetime | None = None) -> Checkpoint:
    now = now or timezone.now()
    root = merkle.tree_root(StoredTree().read, size)
    # One signer at a time (a cron auditlog_seal beside the worker): each checkpoint names the
    # one before it, so two must not follow the same one.
    with sqlite_writer_queue(), transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('auditlog_checkpoint_sign'))")
        extensions = [f"time {int(now.timestamp())}"]
        latest = checkpoint_latest()
        if latest is not None:
            previous = CheckpointBody.parse(latest.note.partition("\n\n")[0] + "\n")
            extensions.append(f"previous {previous.size} {previous.time}")
        body = CheckpointBody(signer.name, size, root, tuple(extensions))
        return Checkpoint.objects.create(
            tree_size=size,
            root_hash=root,
            note=signer.sign(body.text()),
            key_id=signer.key_id.hex(),
            created_at=now,
        )


# --- proofs -----------------------------------------------------------------------------------


@dataclass
class InclusionProof:
    leaf_index: int
    tree_size: int
    leaf: bytes
    hashes: list[bytes]


def event_inclusion_proof(event_uuid, tree_size: int | None) -> InclusionProof | None:
    """The RFC 9162 inclusion proof of an event in the tree of `tree_size` leaves (the latest
    checkpoint's when None). None when the event does not exist or is not a leaf yet; TrailError
    when the tree asked for does not contain it."""
    row = ActionLog.objects.filter(uuid=event_uuid).values_list("id", *LEAF_COLUMNS).first()
    if row is None:
        return None
    leaf = TrailLeaf.objects.filter(event_id=row[0]).values_list("leaf_index", flat=True).first()
    if leaf is None:
        return None
    if tree_size is None:
        latest = checkpoint_latest()
        tree_size = latest.tree_size if latest else 0
    size_now = tree_size_now()
    if not leaf < tree_size <= size_now:
        raise TrailError(f"the event is leaf {leaf}: it is in trees of {leaf + 1} to {size_now} leaves")
    hashes = merkle.inclusion_proof(StoredTree().read, leaf, tree_size)
    return InclusionProof(leaf, tree_size, LEAF_V1.leaf(leaf, row[1:]), hashes)


def tree_consistency_proof(first: int, second: int) -> list[bytes]:
    size_now = tree_size_now()
    if not 0 < first <= second <= size_now:
        raise TrailError(
            f"no consistency proof from {first} to {second} leaves: 0 < first <= second <= {size_now}"
        )
    return merkle.consistency_proof(StoredTree().read, first, second)
