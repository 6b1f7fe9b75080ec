"""Inputs a property-based fuzzer found to break the API contract (issue 10): each is refused
with the event's own 400 (or the right 4xx), never a 500, and a batch stores its valid events."""

import json

import pytest
from django.test import Client

from auditlog.events.datetimes import MSG_DATETIME, MSG_FUTURE
from auditlog.events.metadata import MSG_DUPLICATE_METADATA, MSG_METADATA_INTEGER_RANGE, MSG_NUMBER_RANGE
from auditlog.events.rules import MSG_BLANK, MSG_INTEGER_RANGE, MSG_IP, MSG_NOT_STRING, MSG_OUTCOME
from auditlog.events.validation import (
    FIELD_MORE,
    MAX_FIELD_ERRORS,
    MAX_FIELD_NAME,
    MSG_DUPLICATE,
    MSG_MORE_ERRORS,
)
from auditlog.http import errors
from auditlog.models import ActionLog
from auditlog.reading import filters
from tests.conftest import BATCH_URL, EVENTS_URL, make_event, without_request_id

pytestmark = pytest.mark.django_db

BAD_EVENTS = {
    "outcome-object": ({"outcome": {"a": 1}}, "outcome", MSG_OUTCOME),
    "outcome-list": ({"outcome": ["success"]}, "outcome", MSG_OUTCOME),
    "metadata-number-out-of-range": ('{"big": 1e400}', "metadata", MSG_NUMBER_RANGE),
    "metadata-integer-beyond-i-json": (
        '{"n": [{"big": 9007199254740992}]}',
        "metadata",
        MSG_METADATA_INTEGER_RANGE,
    ),
    "occurred-at-year-1": ({"occurred_at": "0001-01-01T00:00:00+05:00"}, "occurred_at", MSG_DATETIME),
    "occurred-at-after-9999-in-utc": (
        {"occurred_at": "9999-12-31T23:59:59-05:00"},
        "occurred_at",
        MSG_FUTURE,
    ),
    "actor-id-beyond-i-json": ({"actor": {"id": 2**53}}, "actor.id", MSG_INTEGER_RANGE),
    "actor-id-fraction": ({"actor": {"id": 4.5}}, "actor.id", MSG_NOT_STRING),
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
    "until-year-1": ("until", "0001-01-01T00:00:00+05:00"),
    "limit-unicode-digit": ("limit", "³"),
    "actor-id-nul": ("actor_id", "a\x00b"),
    "actor-type-nul": ("actor_type", "\x00"),
    "target-type-nul": ("target_type", "x\x00"),
    "target-id-nul": ("target_id", "\x007"),
    "actor-id-empty": ("actor_id", ""),
    "target-type-empty": ("target_type", ""),
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
    assert without_request_id(response.json()) == {
        "error": {"code": errors.NOT_FOUND, "message": errors.MSG_NOT_FOUND}
    }


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
    assert without_request_id(response.json()) == {
        "error": {"code": errors.BAD_REQUEST, "message": errors.MSG_BAD_REQUEST}
    }


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


def test_an_empty_filter_value_is_a_400_not_a_filter_on_the_empty_string(api):
    response = api.get(EVENTS_URL, actor_id="")

    assert response.json()["error"]["fields"] == {"actor_id": [MSG_BLANK]}


# The date-time grammar (docs/api.md): RFC 3339 section 5.6, from the year 1970, seconds up to 59.
ACCEPTED_DATETIMES = {
    "2026-01-31T12:00:00Z": "2026-01-31T12:00:00+00:00",
    "2026-01-31t12:00:00z": "2026-01-31T12:00:00+00:00",  # RFC 3339 allows either case
    "2026-01-31T12:00:00.5Z": "2026-01-31T12:00:00.500000+00:00",
    "2026-01-31T12:00:00.123456789Z": "2026-01-31T12:00:00.123456+00:00",  # digits past 6 dropped
    "2026-01-31T12:00:00-00:00": "2026-01-31T12:00:00+00:00",
    "2026-01-31T23:59:00+23:59": "2026-01-31T00:00:00+00:00",  # every offset RFC 3339 allows
    "2026-01-31T00:00:00-23:59": "2026-01-31T23:59:00+00:00",
    "1970-01-01T00:00:00+05:00": "1969-12-31T19:00:00+00:00",
    "2024-02-29T00:00:00Z": "2024-02-29T00:00:00+00:00",
}
REFUSED_DATETIMES = [
    "2026-01-31 12:00:00Z",  # the space RFC 3339 merely mentions
    "2026-01-31T12:00:00",  # no offset
    "2026-01-31T12:00Z",  # no seconds
    "2026-01-31",
    "20260131T120000Z",  # ISO 8601 basic format
    "2026-W05-6T12:00:00Z",  # ISO 8601 week date
    "2026-031T12:00:00Z",  # ISO 8601 ordinal date
    "2026-01-31T12:00:00+0100",
    "2026-01-31T12:00:00+01",
    "2026-01-31T12:00:00+24:00",
    "2026-01-31T12:00:00,5Z",
    "2026-01-31T24:00:00Z",
    "2026-12-31T23:59:60Z",  # a leap second
    "2026-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "+2026-01-31T12:00:00Z",
    "2026-01-31T12:00:00Z\n",
    "\uff12\uff10\uff12\uff16-01-31T12:00:00Z",  # full-width digits
    "2026-01-31T12:00:00.Z",
]


@pytest.mark.parametrize(("text", "utc"), ACCEPTED_DATETIMES.items())
def test_an_rfc_3339_date_time_is_stored_in_utc(api, text, utc):
    response = api.post(EVENTS_URL, make_event(occurred_at=text))

    assert response.status_code == 201
    stored = ActionLog.objects.get().occurred_at
    assert stored.isoformat() == utc
    # The same grammar as a filter, on both databases: `since` includes the event.
    assert [e["id"] for e in api.get(EVENTS_URL, since=text).json()["results"]] == [response.json()["id"]]


@pytest.mark.parametrize("text", REFUSED_DATETIMES)
def test_anything_else_is_refused_as_a_date_time(api, text):
    event = api.post(EVENTS_URL, make_event(occurred_at=text))
    listed = api.get(EVENTS_URL, until=text)

    assert event.json()["error"]["fields"] == {"occurred_at": [MSG_DATETIME]}
    assert listed.json()["error"]["fields"] == {"until": [MSG_DATETIME]}


def test_a_filter_past_the_end_of_the_calendar_in_utc_means_the_end_of_time(api):
    assert api.post(EVENTS_URL, make_event()).status_code == 201

    before = api.get(EVENTS_URL, until="9999-12-31T23:59:59-05:00")
    after = api.get(EVENTS_URL, since="9999-12-31T23:59:59-05:00")

    assert len(before.json()["results"]) == 1
    assert after.json()["results"] == []


def test_null_on_an_optional_field_means_absent(api):
    sparse = {"action": "user.login", "actor": {"id": "42"}, "idempotency_key": "k"}
    nulls = sparse | {
        "actor": {"id": "42", "type": None, "name": None},
        "target": None,
        "occurred_at": None,
        "outcome": None,
        "context": {"ip": None, "user_agent": None},
        "metadata": None,
    }

    first = api.post(EVENTS_URL, sparse)
    again = api.post(EVENTS_URL, nulls)

    assert (first.status_code, again.status_code) == (201, 200)  # the same event, not a conflict
    assert again.json()["id"] == first.json()["id"]


DUPLICATE_KEYS = {
    "top-level": ('{"action": "a.b", "action": "c.d", "actor": {"id": "1"}}', {"action": [MSG_DUPLICATE]}),
    "in-actor": ('{"action": "a.b", "actor": {"id": "1", "id": "2"}}', {"actor.id": [MSG_DUPLICATE]}),
    "deep-in-metadata": (
        '{"action": "a.b", "actor": {"id": "1"}, "metadata": {"x": [{"k": 1, "k": 2}]}}',
        {"metadata": [MSG_DUPLICATE_METADATA]},
    ),
}


@pytest.mark.parametrize(("body", "fields"), DUPLICATE_KEYS.values(), ids=DUPLICATE_KEYS.keys())
def test_a_key_given_twice_is_refused_where_it_is(api, body, fields):
    response = api.post(EVENTS_URL, body)

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert not ActionLog.objects.exists()


def test_in_a_batch_a_repeated_key_is_only_its_event_s_400(api):
    items = [json.dumps(make_event(idempotency_key="first")), *(b for b, _ in DUPLICATE_KEYS.values())]
    items.append(json.dumps(make_event(idempotency_key="last")))

    response = api.post(BATCH_URL, '{"events": [' + ", ".join(items) + "]}")

    statuses = [result["status"] for result in response.json()["results"]]
    assert statuses == [201, 400, 400, 400, 201]
    assert set(ActionLog.objects.values_list("idempotency_key", flat=True)) == {"first", "last"}


def test_a_batch_that_gives_events_twice_is_refused(api):
    event = json.dumps(make_event())

    response = api.post(BATCH_URL, f'{{"events": [{event}], "events": [{event}]}}')

    assert response.status_code == 400
    assert not ActionLog.objects.exists()


def test_head_answers_as_get_without_a_body(api):
    api.post(EVENTS_URL, make_event())

    response = api.client.head(EVENTS_URL, headers=api.headers())

    assert response.status_code == 200
    assert response.content == b""
    assert api.client.head(EVENTS_URL).status_code == 401  # and asks for the key as GET does


@pytest.mark.parametrize(
    ("path", "allow"),
    [(EVENTS_URL, "GET, POST, HEAD, OPTIONS"), (BATCH_URL, "POST, OPTIONS")],
)
def test_options_lists_the_methods_without_a_key(client, db, path, allow):
    response = client.options(path)

    assert response.status_code == 200
    assert response["Allow"] == allow
    assert response.json() == {"allow": allow.split(", ")}


def test_options_on_an_unknown_api_path_is_a_json_404(client, db):
    response = client.options("/api/v1/nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == errors.NOT_FOUND


@pytest.mark.parametrize(("sent", "stored"), [(42, "42"), (42.0, "42"), (-(2**53) + 1, str(-(2**53) + 1))])
def test_an_integer_id_is_stored_as_its_decimal_string(api, sent, stored):
    response = api.post(EVENTS_URL, make_event(actor={"id": sent}))

    assert response.status_code == 201
    assert ActionLog.objects.get().actor_id == stored


def test_a_batch_of_many_non_objects_is_one_400_per_item(api):
    response = api.post(BATCH_URL, {"events": [None] * 1000})

    results = response.json()["results"]
    assert response.status_code == 200
    assert {result["status"] for result in results} == {400}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_another_method_with_a_json_405(client, db, path):
    response = client.post(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert response.json()["error"]["code"] == errors.METHOD_NOT_ALLOWED
