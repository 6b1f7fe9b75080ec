from datetime import UTC, datetime, timedelta

import pytest

from auditlog.events import datetimes, metadata, rules, validation
from auditlog.events.validation import ValidationFailed, event_validate
from tests.conftest import make_event

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def fields_of(data, **kwargs):
    with pytest.raises(ValidationFailed) as caught:
        event_validate(data, now=NOW, **kwargs)
    return caught.value.fields


def test_integer_ids_become_strings():
    event = event_validate(make_event(actor={"id": 42}, target={"type": "invoice", "id": 7}), now=NOW)

    assert (event.actor_id, event.target_id) == ("42", "7")


def test_boolean_is_not_an_id():
    assert fields_of(make_event(actor={"id": True})) == {"actor.id": [rules.MSG_NOT_STRING]}


def test_occurred_at_is_normalised_to_utc():
    event = event_validate(make_event(occurred_at="2026-06-01T14:00:00+02:00"), now=NOW)

    assert event.occurred_at == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_occurred_at_without_timezone_is_rejected():
    assert fields_of(make_event(occurred_at="2026-06-01T12:00:00")) == {
        "occurred_at": [datetimes.MSG_DATETIME]
    }


def test_occurred_at_more_than_five_minutes_ahead_is_rejected():
    ahead = (NOW + timedelta(minutes=5, seconds=1)).isoformat()

    assert fields_of(make_event(occurred_at=ahead)) == {"occurred_at": [datetimes.MSG_FUTURE]}


def test_occurred_at_five_minutes_ahead_is_accepted():
    event = event_validate(make_event(occurred_at=(NOW + timedelta(minutes=5)).isoformat()), now=NOW)

    assert event.occurred_at == NOW + timedelta(minutes=5)


def test_ipv6_is_normalised():
    event = event_validate(make_event(context={"ip": "2001:DB8:0:0::1"}), now=NOW)

    assert event.ip_address == "2001:db8::1"


@pytest.mark.parametrize("path", ["actor.name", "target.name", "context.user_agent"])
def test_nul_character_in_text_is_rejected(path):
    parent, name = path.split(".")
    data = make_event()
    data[parent] = dict(data[parent], **{name: "a\x00b"})

    assert fields_of(data) == {path: [rules.MSG_NUL]}


def test_nul_character_in_metadata_is_rejected():
    assert fields_of(make_event(metadata={"a": [{"b": "x\x00"}]})) == {"metadata": [rules.MSG_NUL]}


def test_nul_character_in_metadata_key_is_rejected():
    assert fields_of(make_event(metadata={"a\x00": 1})) == {"metadata": [rules.MSG_NUL]}


def test_lone_surrogate_is_rejected():
    assert fields_of(make_event(actor={"id": "\ud800"})) == {"actor.id": [rules.MSG_SURROGATE]}
    assert fields_of(make_event(metadata={"k": "\udfff"})) == {"metadata": [rules.MSG_SURROGATE]}


def test_non_ascii_text_is_accepted():
    event = event_validate(
        make_event(actor={"id": "josé", "name": "Zoë 🙂"}, metadata={"ключ": "値"}), now=NOW
    )

    assert (event.actor_id, event.actor_name, event.metadata) == ("josé", "Zoë 🙂", {"ключ": "値"})


def test_metadata_of_16_kib_is_accepted_and_one_byte_more_is_not():
    overhead = len('{"k":""}')
    event_validate(make_event(metadata={"k": "x" * (16384 - overhead)}), now=NOW)

    assert fields_of(make_event(metadata={"k": "x" * (16385 - overhead)})) == {
        "metadata": [metadata.MSG_METADATA_SIZE]
    }


def test_metadata_nested_too_deep_is_rejected():
    deep = {}
    node = deep
    for _ in range(40):
        node["n"] = {}
        node = node["n"]

    assert fields_of(make_event(metadata=deep)) == {"metadata": [metadata.MSG_METADATA_DEPTH]}


@pytest.mark.parametrize(
    ("path", "value", "limit"),
    [("action", "a" * 101, 100), ("actor.id", "a" * 256, 255), ("target.type", "t" * 65, 64)],
)
def test_text_over_its_limit_is_rejected(path, value, limit):
    data = make_event()
    if "." in path:
        parent, name = path.split(".")
        data[parent] = dict(data[parent], **{name: value})
    else:
        data[path] = value

    assert fields_of(data) == {path: [rules.msg_too_long(limit)]}


@pytest.mark.parametrize("key", ["", "k" * 129, "naïve", "tab\tkey", 12])
def test_invalid_idempotency_key_is_rejected(key):
    assert fields_of(make_event(idempotency_key=key)) == {"idempotency_key": [rules.MSG_KEY]}


def test_body_key_differing_from_header_is_rejected():
    fields = fields_of(make_event(idempotency_key="a"), header_key="b")

    assert fields == {"idempotency_key": [rules.MSG_KEY_MISMATCH]}


def test_unknown_nested_fields_are_named():
    data = make_event(target={"id": "1", "kind": "x"}, context={"ip": "10.0.0.1", "geo": "x"})

    assert fields_of(data) == {
        "target.kind": [validation.MSG_UNKNOWN],
        "context.geo": [validation.MSG_UNKNOWN],
    }


def test_missing_actor_is_reported_once_at_actor_id():
    data = make_event()
    del data["actor"]

    assert fields_of(data) == {"actor.id": [rules.MSG_REQUIRED]}


def test_same_event_hashes_the_same_and_a_change_does_not():
    first = event_validate(make_event(), now=NOW)
    again = event_validate(make_event(idempotency_key="other-key"), now=NOW)
    changed = event_validate(make_event(metadata={"reason": "other"}), now=NOW)

    assert first.payload_hash == again.payload_hash
    assert first.payload_hash != changed.payload_hash
