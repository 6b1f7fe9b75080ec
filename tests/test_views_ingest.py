import json
import uuid
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from auditlog.events import datetimes, rules, validation
from auditlog.http import endpoint, errors
from auditlog.http.views import MSG_BATCH_HEADER
from auditlog.keys.services import api_key_create, api_key_revoke
from auditlog.models import ActionLog
from tests.conftest import BATCH_URL, EVENTS_URL, ApiClient, make_event, without_request_id

pytestmark = pytest.mark.django_db


def error_body(code, message, fields=None):
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def parse_time(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- single event ---------------------------------------------------------------------------


def test_valid_event_is_stored_with_every_field(api, writer_key):
    response = api.post(EVENTS_URL, make_event())

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "received_at"}
    row = ActionLog.objects.get()
    assert body["id"] == str(row.uuid)
    assert row.uuid.version == 7
    assert abs(parse_time(body["received_at"]) - row.received_at).total_seconds() < 0.001
    assert (row.action, row.actor_id, row.actor_type, row.actor_name) == (
        "invoice.delete",
        "42",
        "user",
        "Ada",
    )
    assert (row.target_type, row.target_id, row.target_name) == ("invoice", "7", "INV-7")
    assert row.occurred_at == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert (row.outcome, row.ip_address, row.user_agent) == ("success", "203.0.113.9", "billing/1.0")
    assert row.metadata == {"reason": "duplicate"}
    assert row.source == writer_key[0]
    assert row.idempotency_key is None
    assert len(row.payload_hash) == 64


def test_minimal_event_gets_defaults(api):
    before = timezone.now()
    response = api.post(EVENTS_URL, {"action": "user.login", "actor": {"id": 42}})

    assert response.status_code == 201
    row = ActionLog.objects.get()
    assert row.actor_id == "42"
    assert row.occurred_at == row.received_at >= before
    assert (row.outcome, row.metadata, row.ip_address, row.target_type) == ("success", {}, None, "")


def test_replayed_key_returns_original_id(api):
    first = api.post(EVENTS_URL, make_event(idempotency_key="evt-1"))
    second = api.post(EVENTS_URL, make_event(idempotency_key="evt-1"))

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == first.json()
    assert ActionLog.objects.count() == 1


def test_key_in_header_and_body_identify_the_same_event(api):
    first = api.post(EVENTS_URL, make_event(), headers={"Idempotency-Key": "evt-2"})
    second = api.post(EVENTS_URL, make_event(idempotency_key="evt-2"))

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert ActionLog.objects.get().idempotency_key == "evt-2"


def test_replayed_key_without_occurred_at_still_replays(api):
    """The default occurred_at is server time: it must not make the replay look different."""
    event = {"action": "user.login", "actor": {"id": "42"}, "idempotency_key": "evt-3"}
    first = api.post(EVENTS_URL, event)
    second = api.post(EVENTS_URL, event)

    assert (first.status_code, second.status_code) == (201, 200)
    assert ActionLog.objects.count() == 1


def test_reused_key_with_other_body_is_conflict(api):
    api.post(EVENTS_URL, make_event(idempotency_key="evt-4"))
    response = api.post(EVENTS_URL, make_event(idempotency_key="evt-4", outcome="failure"))

    assert response.status_code == 409
    assert without_request_id(response.json()) == error_body(errors.CONFLICT, errors.MSG_IDEMPOTENCY_CONFLICT)
    assert ActionLog.objects.get().outcome == "success"


def test_same_key_from_two_sources_is_two_events(api, client):
    other = ApiClient(client, api_key_create(name="other", scopes={"write"})[1])
    api.post(EVENTS_URL, make_event(idempotency_key="shared"))
    response = other.post(EVENTS_URL, make_event(idempotency_key="shared"))

    assert response.status_code == 201
    assert ActionLog.objects.count() == 2


# --- authentication ---------------------------------------------------------------------------


def test_missing_token_is_unauthorized(anonymous_api):
    response = anonymous_api.post(EVENTS_URL, make_event())

    assert response.status_code == 401
    assert without_request_id(response.json()) == error_body(errors.UNAUTHORIZED, endpoint.MSG_NO_TOKEN)
    assert response["WWW-Authenticate"] == 'Bearer realm="auditlog"'
    assert not ActionLog.objects.exists()


def test_wrong_token_is_unauthorized(client):
    response = ApiClient(client, "al_00000000_not-a-real-secret").post(EVENTS_URL, make_event())

    assert response.status_code == 401
    assert without_request_id(response.json()) == error_body(errors.UNAUTHORIZED, endpoint.MSG_BAD_TOKEN)


def test_revoked_token_is_unauthorized(api, writer_key):
    api_key_revoke(key=writer_key[0])
    response = api.post(EVENTS_URL, make_event())

    assert response.status_code == 401
    assert without_request_id(response.json()) == error_body(errors.UNAUTHORIZED, endpoint.MSG_BAD_TOKEN)


def test_read_only_key_cannot_post(reader_api):
    response = reader_api.post(EVENTS_URL, make_event())

    assert response.status_code == 403
    assert without_request_id(response.json()) == error_body(
        errors.FORBIDDEN, endpoint.MSG_SCOPE.format(scope="write")
    )
    assert not ActionLog.objects.exists()


def test_use_sets_last_used_at(api, writer_key):
    api.post(EVENTS_URL, make_event())

    writer_key[0].refresh_from_db()
    assert writer_key[0].last_used_at is not None


# --- malformed requests -----------------------------------------------------------------------


def test_malformed_json_is_invalid_json(api):
    response = api.post(EVENTS_URL, '{"action": ')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == errors.INVALID_JSON
    assert response.json()["error"]["message"].startswith("The body is not valid JSON: ")
    assert set(response.json()["error"]) == {"code", "message", "request_id"}


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "42"])
def test_non_object_body_is_invalid_json(api, body):
    response = api.post(EVENTS_URL, body)

    assert response.status_code == 400
    assert without_request_id(response.json()) == error_body(errors.INVALID_JSON, endpoint.MSG_NOT_OBJECT)


@pytest.mark.parametrize("body", ['{"action": NaN}', '{"a": -Infinity}'])
def test_json_constants_outside_the_standard_are_invalid_json(api, body):
    response = api.post(EVENTS_URL, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == errors.INVALID_JSON
    assert not ActionLog.objects.exists()


def test_deeply_nested_json_is_invalid_json(api, settings):
    settings.AUDITLOG_MAX_EVENT_BYTES = 1_000_000
    response = api.post(EVENTS_URL, "[" * 100_000 + "]" * 100_000)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == errors.INVALID_JSON


def test_non_utf8_body_is_invalid_json(api):
    response = api.post(EVENTS_URL, b'{"action": "\xff\xfe"}')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == errors.INVALID_JSON


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_other_content_type_is_unsupported(api, content_type):
    response = api.post(EVENTS_URL, json.dumps(make_event()), content_type=content_type)

    assert response.status_code == 415
    assert without_request_id(response.json()) == error_body(
        errors.UNSUPPORTED_MEDIA_TYPE, endpoint.MSG_MEDIA_TYPE
    )
    assert not ActionLog.objects.exists()


def test_json_with_utf8_charset_is_accepted(api):
    response = api.post(EVENTS_URL, json.dumps(make_event()), content_type="application/json; charset=UTF-8")

    assert response.status_code == 201


def test_two_mebibyte_body_is_payload_too_large(api):
    body = json.dumps(make_event(metadata={"blob": "x" * (2 * 1024 * 1024)}))
    response = api.post(EVENTS_URL, body)

    assert response.status_code == 413
    assert without_request_id(response.json()) == error_body(
        errors.PAYLOAD_TOO_LARGE, endpoint.MSG_TOO_LARGE.format(limit=65536)
    )
    assert not ActionLog.objects.exists()


def test_missing_actor_id_is_a_field_error(api):
    response = api.post(EVENTS_URL, make_event(actor={"type": "user"}))

    assert response.status_code == 400
    assert without_request_id(response.json()) == error_body(
        errors.VALIDATION_ERROR, validation.MSG_INVALID_EVENT, {"actor.id": [rules.MSG_REQUIRED]}
    )
    assert not ActionLog.objects.exists()


def test_every_problem_is_reported_at_once(api):
    response = api.post(
        EVENTS_URL,
        {
            "action": "Invoice Delete",
            "actor": {"id": "1", "nickname": "x"},
            "occurred_at": "yesterday",
            "outcome": "maybe",
            "context": {"ip": "300.1.1.1"},
            "metadata": [],
            "colour": "red",
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "action": [rules.MSG_ACTION],
        "actor.nickname": [validation.MSG_UNKNOWN],
        "occurred_at": [datetimes.MSG_DATETIME],
        "outcome": [rules.MSG_OUTCOME],
        "context.ip": [rules.MSG_IP],
        "metadata": [rules.MSG_NOT_OBJECT],
        "colour": [validation.MSG_UNKNOWN],
    }


# --- batch ------------------------------------------------------------------------------------


def test_batch_stores_valid_items_and_reports_invalid_ones_in_place(api):
    events = [make_event(actor={"id": f"user-{i}"}) for i in range(100)]
    events[17] = make_event(actor={"type": "user"})
    events[64] = make_event(action="")

    response = api.post(BATCH_URL, {"events": events})

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(100))
    assert results[17] == {
        "index": 17,
        "status": 400,
        "error": {
            "code": errors.VALIDATION_ERROR,
            "message": validation.MSG_INVALID_EVENT,
            "fields": {"actor.id": [rules.MSG_REQUIRED]},
        },
    }
    assert results[64]["status"] == 400
    assert results[64]["error"]["fields"] == {"action": [rules.MSG_BLANK]}
    created = [r for r in results if r["status"] == 201]
    assert len(created) == 98
    assert ActionLog.objects.count() == 98
    stored = dict(ActionLog.objects.values_list("uuid", "actor_id"))
    for result in created:
        assert stored[uuid.UUID(result["id"])] == f"user-{result['index']}"


def test_batch_replays_and_conflicts_per_item(api):
    api.post(EVENTS_URL, make_event(idempotency_key="a"))
    original = ActionLog.objects.get().uuid
    events = [
        make_event(idempotency_key="a"),  # replay of an earlier request
        make_event(idempotency_key="a", outcome="failure"),  # same key, other body
        make_event(idempotency_key="b"),
        make_event(idempotency_key="b"),  # repeat inside the batch
        "not an event",
    ]

    results = api.post(BATCH_URL, {"events": events}).json()["results"]

    assert results[0] == {
        "index": 0,
        "status": 200,
        "id": str(original),
        "received_at": results[0]["received_at"],
    }
    assert results[1] == {
        "index": 1,
        "status": 409,
        "error": {"code": errors.CONFLICT, "message": errors.MSG_IDEMPOTENCY_CONFLICT},
    }
    assert results[2]["status"] == 201
    assert results[3]["status"] == 200
    assert results[3]["id"] == results[2]["id"]
    assert results[4] == {
        "index": 4,
        "status": 400,
        "error": {"code": errors.VALIDATION_ERROR, "message": validation.MSG_EVENT_NOT_OBJECT},
    }
    assert ActionLog.objects.count() == 2


def test_batch_replayed_whole_is_stored_once(api):
    events = [make_event(idempotency_key=f"k{i}") for i in range(50)]
    first = api.post(BATCH_URL, {"events": events}).json()["results"]
    second = api.post(BATCH_URL, {"events": events}).json()["results"]

    assert {r["status"] for r in first} == {201}
    assert {r["status"] for r in second} == {200}
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert ActionLog.objects.count() == 50


def test_batch_of_1000_is_accepted(api):
    response = api.post(BATCH_URL, {"events": [make_event() for _ in range(1000)]})

    assert response.status_code == 200
    assert ActionLog.objects.count() == 1000


@pytest.mark.parametrize("events", [[], "nope", None, [make_event()] * 1001])
def test_batch_needs_1_to_1000_events(api, events):
    response = api.post(BATCH_URL, {"events": events})

    message = "Must be a list of 1 to 1000 events."
    assert response.status_code == 400
    assert without_request_id(response.json()) == error_body(
        errors.VALIDATION_ERROR, message, {"events": [message]}
    )
    assert not ActionLog.objects.exists()


def test_batch_rejects_idempotency_header(api):
    response = api.post(BATCH_URL, {"events": [make_event()]}, headers={"Idempotency-Key": "x"})

    assert response.status_code == 400
    assert without_request_id(response.json()) == error_body(errors.VALIDATION_ERROR, MSG_BATCH_HEADER)


def test_batch_needs_write_scope(reader_api):
    response = reader_api.post(BATCH_URL, {"events": [make_event()]})

    assert response.status_code == 403
    assert not ActionLog.objects.exists()


# --- the error shape everywhere under /api/ ---------------------------------------------------


def test_unknown_api_path_is_json_404(api):
    response = api.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert without_request_id(response.json()) == error_body(errors.NOT_FOUND, errors.MSG_NOT_FOUND)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_wrong_method_is_json_405(client, method):
    response = getattr(client, method)(BATCH_URL)

    assert response.status_code == 405
    assert without_request_id(response.json()) == error_body(errors.METHOD_NOT_ALLOWED, "Use POST, OPTIONS.")
    assert response["Allow"] == "POST, OPTIONS"


def test_unexpected_exception_is_json_500(api, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("auditlog.http.views.event_create", explode)
    api.client.raise_request_exception = False
    response = api.post(EVENTS_URL, make_event())

    assert response.status_code == 500
    assert without_request_id(response.json()) == error_body(errors.INTERNAL_ERROR, errors.MSG_INTERNAL)
