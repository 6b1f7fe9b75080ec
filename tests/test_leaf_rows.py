"""Sealing and auditlog_verify build each leaf from the database's raw row (auditlog.trail.leaf_rows:
no Django converters, Python's C encoder where it writes RFC 8785's text) and hash blocks in
several processes (LeafHasher). Both must give exactly the leaves LEAF_V1.leaf gives from the
ORM's values, the definition docs/trail-format.md documents."""

import io
import json
import random
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection

from auditlog.events.formats import LEAF_V1
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope, TrailLeaf
from auditlog.trail import leaf_rows, merkle
from auditlog.trail.leaf_rows import LEAF_COLUMNS
from auditlog.trail.tree import LeafHasher, TrailError, leaf_hashes, leaves_append

METADATA = [
    {},
    # floats: RFC 8785's numbers (jsonb keeps 1e21 as an integer, beyond 2**53 and refused)
    {"y": -0.0, "z": [1e-7, 0.1 + 0.2, 5e-324, 123.456, 1.5e-300]},
    {"\U0001f600": 1, "\ufb01": 2, "a": {"\uffff": 0, "\U00010000": 1}},  # UTF-16 order differs
    {"n": 2**53, "m": -(2**53), "s": "9007199254740993 as text", "k": 123456789012345},
    # jsonb holds no U+0000 (the generated documents below do)
    {"ctl": '\x01\x1f\x7f\u2028\u2029"\\/', "é": "Zoë", "nested": [[], {}, [None, True, False]]},
    [1, "list metadata", {"b": 1, "a": 2}],
    "a string",
]
TIMES = [
    datetime(2026, 1, 31, 12, 0, tzinfo=UTC),  # no microseconds: SQLite stores no fraction
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


def orm_leaves() -> dict[int, bytes]:
    rows = ActionLog.objects.order_by("id").values_list("id", *LEAF_COLUMNS)
    return {row[0]: LEAF_V1.leaf(index, row[1:]) for index, row in enumerate(rows)}


def odd_events(source) -> None:
    for n, metadata in enumerate(METADATA):
        for when in TIMES:
            ActionLog.objects.create(
                occurred_at=when,
                received_at=when,
                actor_id=f"actor-{n}",
                actor_name="Zoë 😀 \ufb01",
                action="odd.event",
                target_name="" if n % 2 else "Résumé\n\t",
                ip_address="2001:db8::1" if n % 2 else None,
                metadata=metadata,
                idempotency_key=None if n % 3 else f"k-{n}-{when.year}",
                source=source,
                payload_hash="f" * 64,
            )


@pytest.mark.django_db
def test_raw_rows_give_the_orm_values_leaves_on_every_kind_of_value():
    call_command("auditlog_demo", "--count", "300", "--seed", "9", stdout=io.StringIO())
    source, _ = api_key_create(name="odd producer", scopes={Scope.WRITE})
    odd_events(source)
    if connection.vendor == "sqlite":  # another form of a UUID, which Django's UUIDField reads
        columns = [f.column for f in ActionLog._meta.concrete_fields if f.column not in ("id", "uuid")]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ActionLog._meta.db_table} (uuid, {', '.join(columns)}) "
                f"SELECT upper(hex(randomblob(16))), {', '.join(columns)} FROM {ActionLog._meta.db_table} "
                "WHERE id = (SELECT min(id) FROM auditlog_actionlog)"
            )
    expected = orm_leaves()

    rows = leaf_rows.events_leaf_values(0, max(expected))

    assert [event_id for event_id, _ in rows] == list(expected)
    for index, (event_id, values) in enumerate(rows):
        assert leaf_rows.leaf(index, values) == expected[event_id], values


@pytest.mark.django_db
def test_an_integer_beyond_2_53_has_no_leaf_either_way():
    source, _ = api_key_create(name="legacy producer", scopes={Scope.WRITE})
    when = TIMES[0]
    ActionLog.objects.create(
        occurred_at=when, received_at=when, actor_id="1", action="a", source=source, payload_hash="0" * 64,
        metadata={"n": 2**53 + 1},
    )  # fmt: skip
    orm = ActionLog.objects.values_list(*LEAF_COLUMNS).get()
    ((_, values),) = leaf_rows.events_leaf_values(0, 10**18)

    with pytest.raises(ValueError, match="2\\*\\*53"):
        LEAF_V1.leaf(0, orm)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        leaf_rows.leaf(0, values)


def _json_value(rng: random.Random, depth: int = 0):
    alphabet = 'aZ09 _"\\/\x00\x1f\x7f\u00e9\u2028\ud7ff\ue000\ufb01\uffff\U00010000\U0001f600'
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 7, 2**53, -(2**53), 10**15, rng.randrange(-(10**9), 10**9)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e21, 1e-7, 123.456, rng.uniform(-1e6, 1e6), 1e300, 5e-324])
    if kind in (4, 5):
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind in (6, 7):
        keys = [
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 4))) for _ in range(rng.randrange(5))
        ]
        return {key: _json_value(rng, depth + 1) for key in keys}
    return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_leaf_of_stored_json_is_the_jcs_leaf_over_generated_documents():
    """Python's encoder where it is provably RFC 8785's, jcs otherwise: over documents with
    floats, long integers, controls, and names at U+E000 and above (UTF-16 order), stored as
    Django stores them (ASCII escapes) and as jsonb's text gives them (UTF-8)."""
    rng = random.Random(8785)
    base = ["0193-id", "2026-01-31T12:00:00.000000Z", "2026-01-31T12:00:00.250001Z", "a", "1", "user",
            "Zoë", "t", "7", "", "success", None, "ua/1", None, None, "ab12cd34", "f" * 64]  # fmt: skip
    metadata = LEAF_COLUMNS.index("metadata")
    for n in range(3000):
        document = _json_value(rng)
        values = list(base)
        values[metadata] = document
        expected = LEAF_V1.leaf(n, values)
        for stored in (json.dumps(document), json.dumps(document, ensure_ascii=False)):
            values[metadata] = stored
            assert leaf_rows.leaf(n, values) == expected, stored


def test_events_changed_between_reading_ids_and_hashing_them_are_refused():
    with pytest.raises(TrailError, match="changed while they were being sealed"):
        LeafHasher._checked([1, 2, 3], [(1, b"a"), (3, b"c")])


@pytest.fixture
def committed_events(owner_connections):
    """Events the hashing processes can read: committed, outside a test's transaction."""
    call_command("auditlog_demo", "--count", "1200", "--seed", "11", stdout=io.StringIO())
    return list(ActionLog.objects.order_by("id").values_list("id", flat=True))


def test_blocks_are_hashed_in_several_processes_to_the_same_leaves(committed_events, monkeypatch):
    monkeypatch.setattr(LeafHasher, "PARALLEL_MIN", 100)
    ids = committed_events
    expected = [merkle.leaf_hash(leaf) for leaf in orm_leaves().values()]

    with LeafHasher(workers=3) as hasher:
        hashes = hasher.submit(0, 0, ids)
        assert hasher.pool is not None  # forked: this process's connections were closed first
        assert len(hasher._parts(0, ids)) == 3
        assert hashes() == expected
        # the next block, at its leaf indexes
        assert hasher.submit(700, ids[699], ids[700:])() == expected[700:]
    assert [value for _, value in leaf_hashes(0, 0, ids[-1])] == expected

    result = leaves_append(upto_id=ids[-1], block_size=500, workers=2)

    assert result.sealed == len(ids)
    stored = TrailLeaf.objects.order_by("leaf_index").values_list("leaf_index", "event_id", "leaf_hash")
    assert [(index, event_id, bytes(value)) for index, event_id, value in stored] == [
        (index, event_id, expected[index]) for index, event_id in enumerate(ids)
    ]


@pytest.mark.django_db
def test_inside_a_transaction_blocks_are_hashed_here(monkeypatch):
    """Other processes cannot see a caller's uncommitted rows: one process does the work."""
    monkeypatch.setattr(LeafHasher, "PARALLEL_MIN", 10)
    call_command("auditlog_demo", "--count", "50", "--seed", "12", stdout=io.StringIO())
    ids = list(ActionLog.objects.order_by("id").values_list("id", flat=True))

    with LeafHasher(workers=2) as hasher:
        hashes = hasher.submit(0, 0, ids)()
        assert hasher.pool is None
    assert hashes == [merkle.leaf_hash(leaf) for leaf in orm_leaves().values()]
