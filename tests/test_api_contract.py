"""Inputs a property-based fuzzer found to break the API contract (issue 10): each is refused
with the event's own 400 (or the right 4xx), never a 500, and a batch stores its valid events."""

import json

import pytest
from django.test import Client

from auditlog import errors, filters
from auditlog.models import ActionLog
from auditlog.validation import (
    FIELD_MORE,
    MAX_FIELD_ERRORS,
    MAX_FIELD_NAME,
    MSG_DATETIME,
    MSG_IP,
    MSG_MORE_ERRORS,
    MSG_NUMBER_RANGE,
    MSG_OUTCOME,
)
from tests.conftest import BATCH_URL, EVENTS_URL, make_event

pytestmark = pytest.mark.django_db

BAD_EVENTS = {
    "outcome-object": ({"outcome": {"a": 1}}, "outcome", MSG_OUTCOME),
    "outcome-list": ({"outcome": ["success"]}, "outcome", MSG_OUTCOME),
    "metadata-number-out-of-range": ('{"big": 1e400}', "metadata", MSG_NUMBER_RANGE),
    "occurred-at-before-year-1-in-utc": (
        {"occurred_at": "0001-01-01T00:00:00+05:00"},
        "occurred_at",
        MSG_DATETIME,
    ),
    "occurred-at-after-9999-in-utc": (
        {"occurred_at": "9999-12-31T23:59:59-05:00"},
        "occurred_at",
        MSG_DATETIME,
    ),
    "occurred-at-offset-16-hours": (
        {"occurred_at": "2026-01-31T12:00:00+16:00"},
        "occurred_at",
        MSG_DATETIME,
    ),
    "ip-with-zone-id": ({"context": {"ip": "fe80::1%eth0"}}, "context.ip", MSG_IP),
    "ip-empty": ({"context": {"ip": ""}}, "context.ip", MSG_IP),
}


def event_json(change) -> str:
    """The event as JSON text; a str change is raw JSON for metadata (Python cannot write 1e400)."""
    if isinstance(change, str):
        return json.dumps(make_event(metadata={})).replace('"metadata": {}', f'"metadata": {change}')
    return json.dumps(make_event(**change))


@pytest.mark.parametrize(("change", "field", "message"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_an_event_the_database_could_not_store_is_a_400_naming_the_field(api, change, field, message):
    response = api.post(EVENTS_URL, event_json(change))

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: [message]}
    assert not ActionLog.objects.exists()


def test_in_a_batch_each_such_event_is_its_own_400_and_the_valid_ones_are_stored(api):
    bad = [event_json(change) for change, _, _ in BAD_EVENTS.values()]
    items = [
        json.dumps(make_event(idempotency_key="first")),
        *bad,
        json.dumps(make_event(idempotency_key="last")),
    ]

    response = api.post(BATCH_URL, '{"events": [' + ", ".join(items) + "]}")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201] + [400] * len(bad) + [201]
    for result, (_, field, message) in zip(results[1:-1], BAD_EVENTS.values(), strict=True):
        assert result["error"]["fields"] == {field: [message]}
    assert set(ActionLog.objects.values_list("idempotency_key", flat=True)) == {"first", "last"}


BAD_FILTERS = {
    "since-offset-16-hours": ("since", "2026-01-31T12:00:00+16:00"),
    "until-before-year-1-in-utc": ("until", "0001-01-01T00:00:00+05:00"),
    "since-after-9999-in-utc": ("since", "9999-12-31T23:59:59-05:00"),
    "limit-unicode-digit": ("limit", "³"),
    "actor-id-nul": ("actor_id", "a\x00b"),
    "actor-type-nul": ("actor_type", "\x00"),
    "target-type-nul": ("target_type", "x\x00"),
    "target-id-nul": ("target_id", "\x007"),
}


@pytest.mark.parametrize(("name", "value"), BAD_FILTERS.values(), ids=BAD_FILTERS.keys())
def test_a_filter_the_database_could_not_take_is_a_400_naming_it(api, name, value):
    response = api.get(EVENTS_URL, **{name: value})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [name]


@pytest.mark.parametrize("path", ["/api/v1/events/", "/api/v1/nope", "/api/v2/events"])
def test_a_post_to_an_unknown_api_path_is_a_json_404_not_the_csrf_page(writer_key, path):
    client = Client(enforce_csrf_checks=True)

    response = client.post(path, "{}", content_type="application/json")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": errors.NOT_FOUND, "message": errors.MSG_NOT_FOUND}}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig"])
def test_a_body_not_in_plain_utf8_is_a_415(api, encoding):
    response = api.post(EVENTS_URL, json.dumps(make_event()).encode(encoding))

    assert response.status_code == 415
    assert response.json()["error"]["code"] == errors.UNSUPPORTED_MEDIA_TYPE
    assert not ActionLog.objects.exists()


def test_api_answers_are_never_cached(api):
    assert api.post(EVENTS_URL, make_event())["Cache-Control"] == "no-store"
    assert api.get(EVENTS_URL)["Cache-Control"] == "no-store"
    assert api.post(EVENTS_URL, "{")["Cache-Control"] == "no-store"  # errors too


def test_the_field_errors_of_one_event_are_capped(api):
    event = make_event(**{f"unknown_{n}": n for n in range(2000)}, **{"x" * 10_000: 1})  # < 64 KiB

    response = api.post(EVENTS_URL, event)

    fields = response.json()["error"]["fields"]
    assert response.status_code == 400
    assert len(fields) == MAX_FIELD_ERRORS + 1
    assert fields[FIELD_MORE] == [MSG_MORE_ERRORS]
    assert max(len(name) for name in fields) <= MAX_FIELD_NAME + len(FIELD_MORE)
    assert len(response.content) < 4096


def test_a_batch_names_the_fields_of_its_first_100_invalid_events_only(api):
    response = api.post(BATCH_URL, {"events": [{"bogus": n} for n in range(1000)]})

    results = response.json()["results"]
    assert [("fields" in result["error"]) for result in results] == [True] * 100 + [False] * 900
    assert {result["error"]["code"] for result in results} == {errors.VALIDATION_ERROR}
    assert len(response.content) < 200_000


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_host_under_api_is_a_json_400(client, method):
    response = getattr(client, method)(EVENTS_URL, HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response.json() == {"error": {"code": errors.BAD_REQUEST, "message": errors.MSG_BAD_REQUEST}}


def test_an_unknown_host_outside_api_keeps_django_s_page(client):
    response = client.get("/admin/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_a_cursor_pages_only_through_the_list_it_came_from(api):
    for n in range(3):
        assert api.post(EVENTS_URL, make_event(idempotency_key=f"k{n}")).status_code == 201
    cursor = api.get(EVENTS_URL, actor_id="42", limit=1).json()["next_cursor"]

    other_list = api.get(EVENTS_URL, actor_id="43", cursor=cursor)
    unfiltered = api.get(EVENTS_URL, cursor=cursor)
    other_page_size = api.get(EVENTS_URL, actor_id="42", limit=2, cursor=cursor)

    for response in (other_list, unfiltered):
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"cursor": [filters.MSG_CURSOR_FILTERS]}
    assert other_page_size.status_code == 200
    assert len(other_page_size.json()["results"]) == 2
