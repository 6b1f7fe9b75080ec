"""The OpenAPI document (GET /api/v1/openapi.json) is valid OpenAPI 3.1, names every route, and
agrees with the validation on every field rule, both ways: what its schemas accept the service
accepts, and what they refuse it refuses. Schemathesis then fuzzes a live server against it
(tests/live/test_schemathesis.py)."""

import jsonschema_rs
import pytest
from django.http import QueryDict
from django.urls import URLPattern, get_resolver
from schemathesis.specs.openapi.definitions import OPENAPI_31

from auditlog.events.rules import MAX_SAFE_INTEGER
from auditlog.events.validation import ValidationFailed, event_validate
from auditlog.http import errors
from auditlog.http.openapi import openapi_document
from auditlog.reading.filters import event_filters_parse
from tests.conftest import make_event
from tests.test_api_contract import ACCEPTED_DATETIMES, REFUSED_DATETIMES

DOCUMENT_URL = "/api/v1/openapi.json"


@pytest.fixture(scope="module")
def document():
    return openapi_document()


def schema_validator(document, schema: dict):
    root = {**schema, "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def test_the_document_is_served_without_a_key_and_is_valid_openapi_3_1(client, db):
    response = client.get(DOCUMENT_URL)

    document = response.json()
    assert response.status_code == 200
    assert document["openapi"] == "3.1.0"
    problems = [str(error) for error in jsonschema_rs.Draft202012Validator(OPENAPI_31).iter_errors(document)]
    assert problems == []
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_every_route_is_documented_and_every_documented_path_is_a_route(document):
    routes = set()
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLPattern) and pattern.name not in (None, "bench-empty"):
            route = "/" + str(pattern.pattern).replace("<uuid:event_id>", "{event_id}")
            if route.startswith(("/api/", "/healthz", "/readyz")):
                routes.add(route)

    assert routes == set(document["paths"])


def _accepted(event: dict) -> bool:
    try:
        event_validate(event)
    except ValidationFailed:
        return False
    return True


# One field changed at a time on a valid event; each value is one side of a rule's edge.
TEXT_EDGES = [
    "",
    "x",
    "é",
    "a\x00b",
    None,
    42,
    42.0,
    4.5,
    True,
    MAX_SAFE_INTEGER,
    MAX_SAFE_INTEGER + 1,
    [],
    {},
]
EVENT_SAMPLES = [
    *[("action", value) for value in ["invoice.delete", "Invoice", "a b", "x" * 100, "x" * 101, "", None, 1]],
    *[
        (f"{party}.{name}", value)
        for party, limits in (
            ("actor", {"id": 255, "type": 64, "name": 255}),
            ("target", {"id": 255, "type": 64, "name": 255}),
        )
        for name, limit in limits.items()
        for value in [*TEXT_EDGES, "x" * limit, "x" * (limit + 1)]
    ],
    *[("actor", value) for value in [None, {}, [], "42", {"id": "1", "bogus": 1}]],
    *[("target", value) for value in [None, {}, [], {"bogus": 1}]],
    *[("occurred_at", value) for value in [*ACCEPTED_DATETIMES, *REFUSED_DATETIMES, None, 0, ""]],
    *[("outcome", value) for value in ["success", "failure", "", "other", None, 1, ["success"], {"a": 1}]],
    *[
        ("context.ip", value)
        for value in [
            "203.0.113.9",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "fe80::1%eth0",
            "",
            "1.2.3",
            "01.2.3.4",
            "256.1.1.1",
            None,
            7,
        ]
    ],
    *[("context.user_agent", value) for value in ["x" * 512, "x" * 513, "a\x00", None, ""]],
    *[("context", value) for value in [None, {}, [], {"bogus": 1}]],
    *[
        ("metadata", value)
        for value in [
            {},
            {"a": 1},
            {"a": [1, "x", None, True, 1.5, {"b": {}}]},
            {"a": "x\x00"},
            {"\x00": 1},
            {"a": ["\x00"]},
            [],
            "x",
            None,
            1,
        ]
    ],
    *[
        ("idempotency_key", value)
        for value in ["k", "x" * 128, "x" * 129, "", " ", "é", "a\n", "a b", None, 5]
    ],
    *[("bogus", value) for value in [1, None]],
]


def _with(path: str, value) -> dict:
    event = make_event(occurred_at="2026-01-31T12:00:00Z")
    *parents, name = path.split(".")
    node = event
    for parent in parents:
        node = node.setdefault(parent, {})
    node[name] = value
    return event


@pytest.mark.parametrize(("path", "value"), EVENT_SAMPLES, ids=[f"{p}={v!r}"[:60] for p, v in EVENT_SAMPLES])
def test_the_event_schema_and_the_validation_agree(document, path, value):
    event = _with(path, value)
    schema = schema_validator(document, {"$ref": "#/components/schemas/Event"})

    assert schema.is_valid(event) == _accepted(event)


def _filters_accept(name: str, value: str) -> bool:
    params = QueryDict(mutable=True)
    params[name] = value
    try:
        event_filters_parse(params)
    except ValidationFailed:
        return False
    return True


FILTER_SAMPLES = [
    *[
        (name, value)
        for name in ("actor_id", "actor_type", "target_type", "target_id")
        for value in ["", "x", "a\x00", "x" * 64, "x" * 65, "x" * 255, "x" * 256]
    ],
    *[
        ("action", value)
        for value in [
            "invoice.delete",
            "invoice.*",
            ".*",
            "*",
            "invoice*",
            "Invoice",
            "",
            "x" * 100,
            "x" * 99 + "*",
        ]
    ],
    *[("outcome", value) for value in ["success", "failure", "", "x"]],
    *[
        (name, value)
        for name in ("since", "until")
        for value in [*ACCEPTED_DATETIMES, *REFUSED_DATETIMES, ""]
    ],
]


@pytest.mark.parametrize(
    ("name", "value"), FILTER_SAMPLES, ids=[f"{n}={v!r}"[:60] for n, v in FILTER_SAMPLES]
)
def test_the_list_parameters_and_the_filters_agree(document, name, value):
    parameters = document["paths"]["/api/v1/events"]["get"]["parameters"]
    schema = next(parameter["schema"] for parameter in parameters if parameter["name"] == name)

    assert schema_validator(document, schema).is_valid(value) == _filters_accept(name, value)


@pytest.mark.parametrize(("value", "accepted"), [("1", True), ("500", True), ("0", False), ("501", False)])
def test_the_limit_parameter_and_the_filters_agree(document, value, accepted):
    parameters = document["paths"]["/api/v1/events"]["get"]["parameters"]
    schema = next(parameter["schema"] for parameter in parameters if parameter["name"] == "limit")

    assert (
        schema_validator(document, schema).is_valid(int(value)) == accepted == _filters_accept("limit", value)
    )


def test_every_error_code_the_service_has_is_in_the_error_schema(document):
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]

    assert codes == list(errors.STATUS)
