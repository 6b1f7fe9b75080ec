from datetime import UTC, datetime, timedelta

import pytest

from auditlog.events import datetimes
from auditlog.http import errors
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog
from auditlog.reading import filters
from auditlog.reading.keyset import cursor_encode
from tests.conftest import EVENTS_URL, ApiClient, make_event, without_request_id

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def seed(api, count, **overrides):
    events = [
        make_event(
            occurred_at=(T0 + timedelta(minutes=i)).isoformat(), actor={"id": f"u{i % 3}"}, **overrides
        )
        for i in range(count)
    ]
    assert (
        api.client.post(
            "/api/v1/events/batch", {"events": events}, content_type="application/json", headers=api.headers()
        ).status_code
        == 200
    )


def ids(response):
    return [event["id"] for event in response.json()["results"]]


def test_list_is_newest_first_with_every_field(api):
    seed(api, 3)

    response = api.get(EVENTS_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    stored = ActionLog.objects.order_by("-occurred_at")
    assert ids(response) == [str(event.uuid) for event in stored]
    first = body["results"][0]
    assert first == {
        "id": str(stored[0].uuid),
        "occurred_at": "2026-03-01T00:02:00Z",
        "received_at": first["received_at"],
        "action": "invoice.delete",
        "actor": {"id": "u2", "type": "", "name": ""},
        "target": {"id": "7", "type": "invoice", "name": "INV-7"},
        "outcome": "success",
        "context": {"ip": "203.0.113.9", "user_agent": "billing/1.0"},
        "metadata": {"reason": "duplicate"},
        "idempotency_key": None,
        "source": {"name": "producer", "prefix": stored[0].source.prefix},
    }


def test_cursor_walks_every_event_once_even_with_equal_timestamps(api):
    same_time = [make_event(occurred_at=T0.isoformat(), actor={"id": str(i)}) for i in range(7)]
    api.post("/api/v1/events/batch", {"events": same_time})
    seed(api, 5)

    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = api.get(EVENTS_URL, **params).json()
        seen += [event["id"] for event in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    expected = [
        str(u) for u in ActionLog.objects.order_by("-occurred_at", "-id").values_list("uuid", flat=True)
    ]
    assert seen == expected
    assert len(seen) == 12


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"actor_id": "u1"}, 2),
        ({"action": "invoice.delete"}, 5),
        ({"action": "invoice.*"}, 6),
        ({"target_type": "invoice", "target_id": "7"}, 6),
        ({"actor_id": "u1", "action": "invoice.*", "since": "2026-03-01T00:02:00Z"}, 1),
        ({"outcome": "failure"}, 1),
        ({"since": "2026-03-01T00:02:00Z"}, 4),
        ({"until": "2026-03-01T00:02:00+00:00"}, 3),
    ],
)
def test_filters(api, params, expected):
    seed(api, 5)
    export = make_event(action="invoice.export", outcome="failure", occurred_at="2026-03-01T00:10:00Z")
    lookalike = make_event(action="invoices.delete", target={"id": "8"}, occurred_at="2026-02-01T00:00:00Z")
    assert api.post(EVENTS_URL, export).status_code == 201
    assert api.post(EVENTS_URL, lookalike).status_code == 201

    response = api.get(EVENTS_URL, **params)

    assert response.status_code == 200, response.json()
    assert len(response.json()["results"]) == expected


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"limit": "0"}, "limit", filters.MSG_LIMIT),
        ({"limit": "501"}, "limit", filters.MSG_LIMIT),
        ({"limit": "ten"}, "limit", filters.MSG_LIMIT),
        (
            {"since": "yesterday"},
            "since",
            datetimes.MSG_DATETIME,
        ),
        ({"outcome": "maybe"}, "outcome", "Must be one of: success, failure."),
        ({"actor": "42"}, "actor", "Unknown field."),
        ({"cursor": "garbage"}, "cursor", filters.MSG_CURSOR),
        ({"action": "Invoice.*"}, "action", filters.MSG_ACTION_FILTER),
        ({"action": "invoice.de*"}, "action", filters.MSG_ACTION_FILTER),
    ],
)
def test_invalid_query_is_a_field_error(api, params, field, message):
    response = api.get(EVENTS_URL, **params)

    assert response.status_code == 400
    assert without_request_id(response.json()) == {
        "error": {
            "code": errors.VALIDATION_ERROR,
            "message": filters.MSG_INVALID_FILTERS,
            "fields": {field: [message]},
        }
    }


def test_forged_cursor_is_rejected(api):
    valid = cursor_encode(T0, 10)
    payload, signature = valid.rsplit(":", 1)
    forged = payload + ":" + ("A" if signature[0] != "A" else "B") + signature[1:]

    response = api.get(EVENTS_URL, cursor=forged)

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"cursor": [filters.MSG_CURSOR]}


def test_detail_returns_one_event(api):
    event_id = api.post(EVENTS_URL, make_event()).json()["id"]

    response = api.get(f"{EVENTS_URL}/{event_id}")

    assert response.status_code == 200
    assert response.json()["id"] == event_id
    assert response.json()["actor"] == {"id": "42", "type": "user", "name": "Ada"}


def test_detail_of_unknown_event_is_json_404(api):
    response = api.get(f"{EVENTS_URL}/01a20111-a8c8-77cd-83f3-fb9352fb312a")

    assert response.status_code == 404
    assert without_request_id(response.json()) == {
        "error": {"code": errors.NOT_FOUND, "message": errors.MSG_NOT_FOUND}
    }


def test_reading_needs_the_read_scope(client, db):
    producer = ApiClient(client, api_key_create(name="producer", scopes={"write"})[1])

    response = producer.get(EVENTS_URL)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == errors.FORBIDDEN


def test_a_read_key_reads_its_own_source_and_read_all_reads_every_source(client, db, admin_client):
    """read: the key's own events only (another source's, and this service's own, are as if
    they did not exist); read_all: everything, internal events included."""
    billing = ApiClient(client, api_key_create(name="billing", scopes={"write", "read"})[1])
    crm = ApiClient(client, api_key_create(name="crm", scopes={"write", "read"})[1])
    siem = ApiClient(client, api_key_create(name="siem", scopes={"read_all"})[1])
    mine = billing.post(EVENTS_URL, make_event(action="invoice.delete")).json()["id"]
    theirs = crm.post(EVENTS_URL, make_event(action="contact.update")).json()["id"]
    admin_client.get("/admin/auditlog/actionlog/")  # an internal event or two: the admin's own
    internal = set(ActionLog.objects.filter(source__name="auditlog-internal").values_list("uuid", flat=True))
    assert internal

    assert ids(billing.get(EVENTS_URL)) == [mine]
    assert ids(billing.get(EVENTS_URL, action="contact.update")) == []
    assert ids(billing.get(EVENTS_URL, action="contact.*")) == []
    assert billing.get(f"{EVENTS_URL}/{theirs}").status_code == 404
    assert billing.get(f"{EVENTS_URL}/{mine}").status_code == 200
    for event_id in internal:
        assert billing.get(f"{EVENTS_URL}/{event_id}").status_code == 404
    everything = set(ids(siem.get(EVENTS_URL, limit="500")))
    assert {mine, theirs} | {str(event_id) for event_id in internal} == everything
    assert siem.get(f"{EVENTS_URL}/{theirs}").json()["source"]["name"] == "crm"


@pytest.mark.parametrize("name", ["auditlog-internal", "Auditlog-Internal", "auditlog-anything"])
def test_internal_source_names_are_reserved(name):
    with pytest.raises(ValueError, match="reserved"):
        api_key_create(name=name, scopes={"write"})
