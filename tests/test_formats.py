"""The stored formats, pinned to golden values computed from fixed events.

The payload hash and the sealed canonical form are stored (ActionLog.payload_hash, the seal
chain), so how they are computed is part of the data: were a value below to change, every
replay of an older event would answer 409 and every sealed event would verify as modified.
Never update a golden value to make a test pass; add the next version of the format instead.

The field-list tests make a new event field a decision: it joins no format until it is named
in a format's next version or in the format's list of fields left out.
"""

import hashlib
import io
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from uuid import UUID

import pytest
from django.utils import timezone as django_timezone

from auditlog.events.definition import EVENT_FIELDS
from auditlog.events.formats import (
    LEAF_V1,
    NOT_IN_LEAF,
    NOT_IN_PAYLOAD_HASH,
    PAYLOAD_HASH_V1,
)
from auditlog.events.validation import EventInput, event_validate
from auditlog.ingest.services import event_record_internal
from auditlog.ingest.storage import COLUMNS
from auditlog.models import ActionLog, ApiKey
from auditlog.trail import legacy_chain

NOW = datetime(2026, 2, 1, tzinfo=UTC)

# --- payload hash -----------------------------------------------------------------------------

# (request body, the text hashed, its SHA-256)
PAYLOAD_HASH_GOLDEN = {
    "ascii_ipv4": (
        {
            "action": "invoice.delete",
            "actor": {"id": "42", "type": "user", "name": "Ada"},
            "target": {"type": "invoice", "id": "7", "name": "INV-7"},
            "occurred_at": "2026-01-31T12:00:00Z",
            "outcome": "success",
            "context": {"ip": "203.0.113.9", "user_agent": "billing/1.0"},
            "metadata": {"reason": "duplicate"},
        },
        '["invoice.delete","42","user","Ada","invoice","7","INV-7","2026-01-31T12:00:00+00:00",'
        '"success","203.0.113.9","billing/1.0"]{"reason":"duplicate"}',
        "4f79803fc6955e154cf61025da8b6020a6057871976000752d1b5a8786437e9d",
    ),
    "unicode_ipv6_integer_ids_microseconds": (
        {
            "action": "document.share",
            "actor": {"id": 42, "type": "user", "name": "Zoë Ångström 山田"},
            "target": {"type": "document", "id": 7.0, "name": "Résumé 📄"},
            "occurred_at": "2026-01-31T13:00:00.250001+01:00",
            "outcome": "failure",
            "context": {"ip": "2001:DB8:0:0::1", "user_agent": "Mozilla/5.0 (X11; Linux) «test»"},
            "metadata": {
                "zeta": [1, 2.5, None, True, {"b": "ü", "a": []}],
                "alpha": {"nested": {"deeper": {"k": "値"}}},
                "empty": {},
                "null": None,
            },
        },
        '["document.share","42","user","Zoë Ångström 山田","document","7","Résumé 📄",'
        '"2026-01-31T12:00:00.250001+00:00","failure","2001:db8::1","Mozilla/5.0 (X11; Linux) «test»"]'
        '{"alpha":{"nested":{"deeper":{"k":"値"}}},"empty":{},"null":null,'
        '"zeta":[1,2.5,null,true,{"a":[],"b":"ü"}]}',
        "79288775c568068c82ded750a182eda9f86d120a9bad848963f991ad21c4ed1b",
    ),
    "minimal_nulls": (
        {"action": "user.login", "actor": {"id": "u-1"}},
        '["user.login","u-1","","","","","",null,"success",null,""]{}',
        "12f86df483a77771b37a72c44401679b426244dd5bea2fdefafd2b0e3cb68ebd",
    ),
}


@pytest.mark.parametrize("name", PAYLOAD_HASH_GOLDEN)
def test_payload_hash_of_a_fixed_event_is_the_golden_value(name):
    body, _, expected = PAYLOAD_HASH_GOLDEN[name]

    assert event_validate(body, now=NOW).payload_hash == expected


@pytest.mark.parametrize("name", PAYLOAD_HASH_GOLDEN)
def test_payload_hash_v1_of_a_fixed_event_hashes_the_golden_text(name):
    body, text, expected = PAYLOAD_HASH_GOLDEN[name]
    event = event_validate(body, now=NOW)

    assert PAYLOAD_HASH_V1.text(event[: len(PAYLOAD_HASH_V1.fields)], event.metadata_json) == text
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == expected


def test_idempotency_key_is_not_part_of_the_payload_hash():
    body, _, expected = PAYLOAD_HASH_GOLDEN["ascii_ipv4"]

    assert event_validate({**body, "idempotency_key": "k-1"}, now=NOW).payload_hash == expected
    assert event_validate(body, header_key="k-2", now=NOW).payload_hash == expected


@pytest.mark.django_db
def test_payload_hash_of_an_internal_event_is_the_golden_value(monkeypatch):
    monkeypatch.setattr(django_timezone, "now", lambda: datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC))

    log = event_record_internal(
        action="admin.login", actor_id="staff:1", metadata={"path": "/admin/", "ünï": [1, None]}
    )

    text = (
        '["admin.login","staff:1","staff","","","","","2026-01-31T12:00:00.123456+00:00","success",null,""]'
        '{"path":"/admin/","ünï":[1,null]}'
    )
    expected = "43ae0795da3d9a1463d46f7f788f2f1a6fd6a5f1e3cf8c48e600c08f8b42960c"
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == expected
    assert log.payload_hash == expected


# --- the hash chain before the tree (auditlog.trail.legacy_chain; migration 0009) ----------

SOURCE_ID = 3
BIG_ID = 2**53 + 1  # beyond a double's exact integers: still written exactly
# Fixed events by column name, so that the format's own field list decides the order.
EVENTS = [
    {
        "id": 1,
        "uuid": UUID("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"),
        "occurred_at": datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        "received_at": datetime(2026, 1, 31, 12, 0, 0, 250001, tzinfo=UTC),
        "actor_id": "42",
        "actor_type": "user",
        "actor_name": "Ada",
        "action": "invoice.delete",
        "target_type": "invoice",
        "target_id": "7",
        "target_name": "INV-7",
        "outcome": "success",
        "ip_address": "203.0.113.9",
        "user_agent": "billing/1.0",
        "metadata": {"reason": "duplicate"},
        "source_id": SOURCE_ID,
        "idempotency_key": "key-1",
        "payload_hash": "a" * 64,
    },
    {
        "id": 2,
        "uuid": UUID("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c"),
        "occurred_at": datetime(2026, 1, 31, 13, 0, 0, 250001, tzinfo=timezone(timedelta(hours=1))),
        "received_at": datetime(2026, 1, 31, 12, 0, 1, 999999, tzinfo=UTC),
        "actor_id": "42",
        "actor_type": "user",
        "actor_name": "Zoë Ångström 山田",
        "action": "document.share",
        "target_type": "document",
        "target_id": "7",
        "target_name": "Résumé 📄",
        "outcome": "failure",
        "ip_address": "2001:db8::1",
        "user_agent": "Mozilla/5.0 (X11; Linux) «test»",
        "metadata": {
            "zeta": [1, 2.5, None, True, {"b": "ü", "a": []}],
            "alpha": {"nested": {"deeper": {"k": "値"}}},
            "empty": {},
            "null": None,
        },
        "source_id": SOURCE_ID,
        "idempotency_key": None,
        "payload_hash": "b" * 64,
    },
    {
        "id": BIG_ID,
        "uuid": UUID("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5d"),
        "occurred_at": datetime(1970, 1, 1, tzinfo=UTC),
        "received_at": datetime(2026, 1, 31, 12, 0, 2, 1, tzinfo=UTC),
        "actor_id": "u-1",
        "actor_type": "",
        "actor_name": "",
        "action": "user.login",
        "target_type": "",
        "target_id": "",
        "target_name": "",
        "outcome": "success",
        "ip_address": None,
        "user_agent": "",
        "metadata": {},
        "source_id": SOURCE_ID,
        "idempotency_key": None,
        "payload_hash": "c" * 64,
    },
]


def sealed_row(event: dict) -> tuple:
    """The event as sealing reads it: the values of the format's fields, in its order."""
    return tuple(event[name] for name in legacy_chain.FIELDS)


CANONICAL_GOLDEN = [
    '[1,"0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b","2026-01-31T12:00:00+00:00",'
    '"2026-01-31T12:00:00.250001+00:00","42","user","Ada","invoice.delete","invoice","7","INV-7",'
    '"success","203.0.113.9","billing/1.0","{\\"reason\\":\\"duplicate\\"}",3,"key-1",'
    '"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]',
    '[2,"0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c","2026-01-31T12:00:00.250001+00:00",'
    '"2026-01-31T12:00:01.999999+00:00","42","user","Zoë Ångström 山田","document.share","document",'
    '"7","Résumé 📄","failure","2001:db8::1","Mozilla/5.0 (X11; Linux) «test»",'
    '"{\\"alpha\\":{\\"nested\\":{\\"deeper\\":{\\"k\\":\\"値\\"}}},\\"empty\\":{},\\"null\\":null,'
    '\\"zeta\\":[1,2.5,null,true,{\\"a\\":[],\\"b\\":\\"ü\\"}]}",3,null,'
    '"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]',
    '[9007199254740993,"0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5d","1970-01-01T00:00:00+00:00",'
    '"2026-01-31T12:00:02.000001+00:00","u-1","","","user.login","","","","success",null,"","{}",3,null,'
    '"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"]',
]
# link(i) = SHA-256(link(i-1) || canonical(row i)), from the genesis
LINKS_GOLDEN = [
    "0e7bcd82291625c548a35e5988f18d1c8e7a056a55c95af4d91365d646465ba4",
    "eb749be10c18fcbf0b4e07c45cfdd44697c3483117b1dcabc8154004aeb09487",
    "aef8888b853575e74dc053344f27222a78db08d904f05bd981f9c3135b377bc2",
]
SEAL_KEY = b"golden-seal-key"


@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_canonical_form_of_a_fixed_event_is_the_golden_text(index):
    assert legacy_chain.canonical(sealed_row(EVENTS[index])) == CANONICAL_GOLDEN[index].encode("utf-8")


def test_chain_over_the_fixed_events_is_the_golden_links():
    chain, links = legacy_chain.GENESIS, []
    for event in EVENTS:
        chain = legacy_chain.link(chain, sealed_row(event))
        links.append(chain)

    assert links == LINKS_GOLDEN


def test_golden_links_are_sha256_of_the_previous_link_and_the_golden_text():
    previous = legacy_chain.GENESIS
    for text, expected in zip(CANONICAL_GOLDEN, LINKS_GOLDEN, strict=True):
        assert hashlib.sha256(previous.encode("ascii") + text.encode("utf-8")).hexdigest() == expected
        previous = expected


@pytest.mark.django_db
def test_fixed_events_read_back_from_the_database_have_the_golden_canonical_form():
    ApiKey.objects.create(id=SOURCE_ID, name="golden", prefix="golden", key_hash="0" * 64, scopes="write")
    for event in EVENTS:
        ActionLog.objects.create(**event)

    rows = ActionLog.objects.filter(id__lte=BIG_ID).order_by("id").values_list(*legacy_chain.FIELDS)

    assert [legacy_chain.canonical(row).decode("utf-8") for row in rows] == CANONICAL_GOLDEN


def test_checkpoint_macs_and_key_id_are_the_golden_values():
    block = SimpleNamespace(
        first_event_id=1,
        last_event_id=BIG_ID,
        event_count=3,
        previous_hash=legacy_chain.GENESIS,
        chain_hash=LINKS_GOLDEN[-1],
    )
    anchor = SimpleNamespace(purged_through_event_id=BIG_ID, chain_hash=LINKS_GOLDEN[-1], purged_count=3)

    assert legacy_chain.key_id(SEAL_KEY) == "0bc884bec73f"
    assert legacy_chain.block_mac(SEAL_KEY, block) == (
        "e38d737edde6c0cb882d164ae89bb2134e382d69f5e2289be0ad1d2b399f4ea5"
    )
    assert legacy_chain.anchor_mac(SEAL_KEY, anchor) == (
        "fc5c718c672175a207c9802ea20811b319d2d66d4b492ff2ececb90ea3438f7d"
    )


# --- the field lists --------------------------------------------------------------------------

# The event's columns as the definition has them (tests/test_definition.py: the model's).
EVENT_COLUMNS = {field.column for field in EVENT_FIELDS}


def test_payload_hash_v1_fields_are_frozen():
    assert PAYLOAD_HASH_V1.version == 1
    assert PAYLOAD_HASH_V1.fields == (
        "action",
        "actor_id",
        "actor_type",
        "actor_name",
        "target_type",
        "target_id",
        "target_name",
        "occurred_at",
        "outcome",
        "ip_address",
        "user_agent",
    )


def test_legacy_chain_fields_are_frozen():
    assert legacy_chain.GENESIS == "0" * 64
    assert legacy_chain.FIELDS == (
        "id",
        "uuid",
        "occurred_at",
        "received_at",
        "actor_id",
        "actor_type",
        "actor_name",
        "action",
        "target_type",
        "target_id",
        "target_name",
        "outcome",
        "ip_address",
        "user_agent",
        "metadata",
        "source_id",
        "idempotency_key",
        "payload_hash",
    )


def test_every_event_column_is_hashed_or_named_as_left_out():
    hashed = {*PAYLOAD_HASH_V1.fields, "metadata"}  # metadata follows the array

    assert not hashed & NOT_IN_PAYLOAD_HASH.keys()
    assert hashed | NOT_IN_PAYLOAD_HASH.keys() == EVENT_COLUMNS


def test_every_validated_field_is_hashed_or_named_as_left_out():
    hashed = {*PAYLOAD_HASH_V1.fields, "metadata", "metadata_json"}  # metadata as its canonical JSON

    assert set(EventInput._fields) <= hashed | NOT_IN_PAYLOAD_HASH.keys()


def test_validated_event_begins_with_the_payload_hash_fields_in_their_order():
    # event_validate hashes EventInput's first values as they stand, without looking up names.
    assert EventInput._fields[: len(PAYLOAD_HASH_V1.fields)] == PAYLOAD_HASH_V1.fields


# --- the trail's leaves -----------------------------------------------------------------------

LEAF_GOLDEN_VALUES = (
    UUID("01935f6e-7c3a-7000-8000-000000000001"),
    datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
    datetime(2026, 1, 31, 12, 0, 0, 250001, tzinfo=timezone(timedelta(hours=1))),
    "document.share",
    "42",
    "user",
    "Zoë Ångström 山田",
    "document",
    "7",
    "Résumé 📄",
    "failure",
    "2001:db8::1",
    "app/2.0",
    {"b": [1, 2.5, None, True], "a": "\u2028x", "😂": 1, "\ufb33": 2},
    None,
    "ab12cd34",
    "f" * 64,
)
# RFC 8785: members sorted by UTF-16 code units (the emoji's surrogates before U+FB33), U+2028
# as is, times in UTC with six fractional digits. docs/trail-format.md shows the same vector.
LEAF_GOLDEN = (
    '{"action":"document.share","actor_id":"42","actor_name":"Zoë Ångström 山田","actor_type":"user",'
    '"id":"01935f6e-7c3a-7000-8000-000000000001","idempotency_key":null,"ip_address":"2001:db8::1",'
    '"leaf_index":5,"metadata":{"a":"\u2028x","b":[1,2.5,null,true],"😂":1,"\ufb33":2},'
    '"occurred_at":"2026-01-31T12:00:00.000000Z","outcome":"failure","payload_hash":"' + "f" * 64 + '",'
    '"received_at":"2026-01-31T11:00:00.250001Z","source":"ab12cd34","target_id":"7",'
    '"target_name":"Résumé 📄","target_type":"document","user_agent":"app/2.0","v":1}'
)
LEAF_HASH_GOLDEN = "0141579d2b56f11a5264024daff43efb0a1054f6f35cd579d243fa4508a0e9e2"


def test_leaf_v1_golden():
    leaf = LEAF_V1.leaf(5, LEAF_GOLDEN_VALUES)

    assert leaf == LEAF_GOLDEN.encode("utf-8")
    assert hashlib.sha256(b"\x00" + leaf).hexdigest() == LEAF_HASH_GOLDEN


def test_every_event_column_is_in_the_leaf_or_named_as_left_out():
    in_leaf = set(LEAF_V1.fields)

    assert not in_leaf & NOT_IN_LEAF.keys()
    assert in_leaf | NOT_IN_LEAF.keys() == EVENT_COLUMNS
    assert set(COLUMNS) <= in_leaf | NOT_IN_LEAF.keys()  # the insert's columns, too


@pytest.mark.django_db
def test_leaf_v1_written_directly_is_the_jcs_of_its_object():
    """LeafFormat.leaf writes the bytes itself, for speed: they are jcs.canonical of obj()."""
    from django.core.management import call_command

    from auditlog.trail import jcs
    from auditlog.trail.leaf_rows import LEAF_COLUMNS

    call_command("auditlog_demo", "--count", "500", "--seed", "3", stdout=io.StringIO())
    rows = list(ActionLog.objects.order_by("id").values_list(*LEAF_COLUMNS))
    odd = list(LEAF_GOLDEN_VALUES)
    for metadata in ({"x": 1e21, "y": -0.0, "z": [1e-7, 0.1 + 0.2]}, {"\U0001f600": 1, "\ufb01": 2}, {}):
        odd[13] = metadata
        rows.append(tuple(odd))

    for index, row in enumerate(rows):
        assert LEAF_V1.leaf(index, row) == jcs.canonical(LEAF_V1.obj(index, row)), row
