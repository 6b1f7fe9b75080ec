"""The client refuses what the service refuses, by the same rules: its copy of the rules is
the service's OpenAPI document, and events run through both validators get the same verdict."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from auditlog_client.validation import EventInvalid, event_check

from auditlog.events.validation import ValidationFailed, event_validate
from tests.client.client_schema import SHIPPED, text
from tests.conftest import make_event

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def test_the_clients_rules_are_the_services_openapi_document():
    assert SHIPPED.read_text() == text(), (
        "clients/python/auditlog_client/event.schema.json differs from the service's rules: "
        "run make client-schema"
    )


def _with(path: str, value):
    event = make_event(idempotency_key="k-1")
    *parents, last = path.split(".")
    node = event
    for name in parents:
        node = node.setdefault(name, {})
    if value is _DROP:
        node.pop(last, None)
    else:
        node[last] = value
    return event


_DROP = object()
CASES = [
    ("a plain event", make_event(idempotency_key="k-1")),
    ("integer ids", _with("actor.id", 42)),
    ("the largest exact integer id", _with("target.id", 2**53 - 1)),
    ("an id past 2^53", _with("target.id", 2**53)),
    ("no action", _with("action", _DROP)),
    ("an upper-case action", _with("action", "Invoice.Delete")),
    ("an action of 100", _with("action", "a" * 100)),
    ("an action of 101", _with("action", "a" * 101)),
    ("an action ending in a newline", _with("action", "invoice.delete\n")),
    ("no actor", _with("actor", _DROP)),
    ("an actor without id", _with("actor", {"type": "user"})),
    ("an empty actor id", _with("actor.id", "")),
    ("a NUL in a name", _with("actor.name", "a\x00b")),
    ("a lone surrogate", _with("actor.name", "\ud800")),
    ("an actor type of 65", _with("actor.type", "t" * 65)),
    ("an unknown field", _with("colour", "red")),
    ("an unknown actor field", _with("actor.email", "a@example.com")),
    ("a null target", _with("target", None)),
    ("outcome failure", _with("outcome", "failure")),
    ("outcome maybe", _with("outcome", "maybe")),
    ("an IPv6 address", _with("context.ip", "2001:db8::1")),
    ("an IPv6 zone id", _with("context.ip", "fe80::1%eth0")),
    ("an empty ip", _with("context.ip", "")),
    ("not an ip", _with("context.ip", "300.1.1.1")),
    ("a user agent of 513", _with("context.user_agent", "u" * 513)),
    ("occurred in a minute", _with("occurred_at", (NOW + timedelta(minutes=1)).isoformat())),
    ("occurred in ten minutes", _with("occurred_at", (NOW + timedelta(minutes=10)).isoformat())),
    ("occurred without offset", _with("occurred_at", "2026-01-31T12:00:00")),
    ("occurred with a space", _with("occurred_at", "2026-01-31 12:00:00Z")),
    ("occurred in 1969", _with("occurred_at", "1969-12-31T23:59:59Z")),
    ("metadata with changes", _with("metadata", {"changes": {"email": ["a@x", "b@x"]}})),
    ("metadata not an object", _with("metadata", [1, 2])),
    ("metadata 33 deep", _with("metadata", {"a": json.loads("[" * 32 + "]" * 32)})),
    ("metadata 32 deep", _with("metadata", {"a": json.loads("[" * 31 + "]" * 31)})),
    ("metadata of 16 KiB", _with("metadata", {"x": "y" * (16 * 1024 - 8)})),
    ("metadata over 16 KiB", _with("metadata", {"x": "y" * (16 * 1024)})),
    ("metadata number past 2^53", _with("metadata", {"n": 2**60})),
    ("metadata NaN", _with("metadata", {"n": float("nan")})),
    ("metadata NUL key", _with("metadata", {"a\x00": 1})),
    ("a key of 128", _with("idempotency_key", "k" * 128)),
    ("a key of 129", _with("idempotency_key", "k" * 129)),
    ("a key with a tab", _with("idempotency_key", "a\tb")),
]


@pytest.mark.parametrize(("name", "event"), CASES, ids=[name for name, _ in CASES])
def test_the_client_and_the_service_agree(name, event):
    try:
        event_validate(json.loads(json.dumps(event)) if _encodable(event) else event, now=NOW)
        service_accepts = True
    except ValidationFailed:
        service_accepts = False
    try:
        event_check(event, now=NOW)
        client_accepts = True
    except EventInvalid as exc:
        client_accepts = False
        assert exc.fields, exc
    assert client_accepts == service_accepts, name


def _encodable(event) -> bool:
    try:
        json.dumps(event, allow_nan=False).encode("utf-8")
        json.dumps(event, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    return True
