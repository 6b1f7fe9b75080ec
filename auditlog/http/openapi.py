"""The OpenAPI 3.1 document of the API, served at /api/v1/openapi.json.

Built from the definitions the validation itself uses (field tables, limits, patterns, error
codes), so the two cannot drift; tests/test_openapi.py checks every field rule both ways.
What JSON Schema cannot say (an `occurred_at` at most 5 minutes ahead of the server's clock,
metadata's serialized size and depth, the body and header idempotency keys agreeing) is in the
descriptions.
"""

from django.conf import settings

from auditlog.events import validation
from auditlog.http import errors
from auditlog.models import Outcome
from auditlog.reading import filters

NO_NUL = "^[^\\x00]*$"
# The Idempotency-Key header as the server sees it: HTTP drops spaces and tabs around a value.
HEADER_KEY = "^[ \\t]*[\\x21-\\x7e]([\\x20-\\x7e]{0,126}[\\x21-\\x7e])?[ \\t]*$"
JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _text(limit: int, *, required: bool, ints: bool = False) -> dict:
    text = {"type": "string", "maxLength": limit, "pattern": NO_NUL}
    if required:
        text["minLength"] = 1
    if ints:
        bound = validation.MAX_SAFE_INTEGER
        integer = {"type": "integer", "minimum": -bound, "maximum": bound}
        text = {"anyOf": [text, integer]}
    return text if required else _nullable(text)


def _party(fields: dict, required: bool) -> dict:
    properties, names = {}, []
    for name, (_, limit, name_required, ints) in fields.items():
        properties[name] = _text(limit, required=name_required and required, ints=ints)
        if name_required and required:
            names.append(name)
    party = {"type": "object", "properties": properties, "additionalProperties": False}
    if names:
        party["required"] = names
    return party


def _datetime(description: str) -> dict:
    return {
        "type": "string",
        "format": "date-time",
        "pattern": f"^{validation.DATETIME_RE.pattern}$",
        "description": description,
    }


def _metadata_value() -> dict:
    return {
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": _ref("MetadataValue")},
            {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": _ref("MetadataValue"),
            },
        ]
    }


def _event_in() -> dict:
    metadata = {
        "type": "object",
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": _ref("MetadataValue"),
        "description": (
            f"At most {validation.MAX_METADATA_BYTES} bytes once serialized compactly in UTF-8, "
            f"and {validation.MAX_METADATA_DEPTH} levels deep; numbers within a double's range."
        ),
    }
    context = {
        "type": "object",
        "properties": {
            "ip": _nullable(
                {
                    "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
                    "type": "string",
                    "description": "Without a zone id; send null or leave it out when unknown.",
                }
            ),
            "user_agent": _text(validation.MAX_USER_AGENT, required=False),
        },
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "description": "An event. null on an optional field means the same as leaving it out.",
        "properties": {
            "action": {
                "type": "string",
                "minLength": 1,
                "maxLength": validation.MAX_ACTION,
                "pattern": f"^{validation.ACTION_RE.pattern}$",
                "examples": ["invoice.delete"],
            },
            "actor": _party(validation.ACTOR_FIELDS, True),
            "target": _nullable(_party(validation.TARGET_FIELDS, False)),
            "occurred_at": _nullable(
                _datetime(
                    "RFC 3339, from the year 1970, seconds up to 59; not more than 5 minutes after "
                    "the server's clock. Default: when the server received the event."
                )
            ),
            "outcome": _nullable({"enum": list(Outcome.values)}),
            "context": _nullable(context),
            "metadata": _nullable(metadata),
            "idempotency_key": _nullable(
                {
                    "type": "string",
                    "pattern": f"^{validation.KEY_RE.pattern}$",
                    "description": "Unique per API key; equal to the Idempotency-Key header if both.",
                }
            ),
        },
        "required": ["action", "actor"],
        "additionalProperties": False,
    }


def _event_out() -> dict:
    party = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "type": {"type": "string"}, "name": {"type": "string"}},
        "required": ["id", "type", "name"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "received_at": {"type": "string", "format": "date-time"},
            "action": {"type": "string"},
            "actor": party,
            "target": party,
            "outcome": {"enum": list(Outcome.values)},
            "context": {
                "type": "object",
                "properties": {"ip": {"type": ["string", "null"]}, "user_agent": {"type": "string"}},
                "required": ["ip", "user_agent"],
                "additionalProperties": False,
            },
            "metadata": {"type": "object"},
            "idempotency_key": {"type": ["string", "null"]},
            "source": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "prefix": {"type": "string"}},
                "required": ["name", "prefix"],
                "additionalProperties": False,
            },
        },
        "required": [
            "id",
            "occurred_at",
            "received_at",
            "action",
            "actor",
            "target",
            "outcome",
            "context",
            "metadata",
            "idempotency_key",
            "source",
        ],
        "additionalProperties": False,
    }


def _ack() -> dict:
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "received_at": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "received_at"],
        "additionalProperties": False,
    }


def _error() -> dict:
    return {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"enum": list(errors.STATUS)},
                    "message": {"type": "string"},
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}},
                        "description": f"At most {validation.MAX_FIELD_ERRORS} fields, then `...`.",
                    },
                },
                "required": ["code", "message"],
                "additionalProperties": False,
            }
        },
        "required": ["error"],
        "additionalProperties": False,
    }


def _batch_results() -> dict:
    stored = {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "status": {"enum": [200, 201]},
            "id": {"type": "string", "format": "uuid"},
            "received_at": {"type": "string", "format": "date-time"},
        },
        "required": ["index", "status", "id", "received_at"],
        "additionalProperties": False,
    }
    refused = {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "status": {"enum": [400, 409]},
            "error": _error()["properties"]["error"],
        },
        "required": ["index", "status", "error"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"results": {"type": "array", "items": {"anyOf": [stored, refused]}}},
        "required": ["results"],
        "additionalProperties": False,
    }


ERROR_DESCRIPTIONS = {
    400: "Invalid JSON, or invalid fields (named in `fields`).",
    401: "Missing, unknown or revoked API key.",
    403: "The API key lacks the scope.",
    404: "No such event.",
    408: "The body did not arrive in time.",
    409: "The idempotency key was used with another event.",
    413: "The body is too large.",
    415: "Not application/json in UTF-8.",
    500: "Unexpected error; nothing was acknowledged, retrying is safe.",
    503: "The database is unavailable; retry after Retry-After seconds.",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    503: {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": True}},
}


def _responses(ok: dict, *codes: int) -> dict:
    responses = dict(ok)
    for code in codes:
        response = {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {JSON: {"schema": _ref("Error")}},
        }
        if code in HEADERS:
            response["headers"] = HEADERS[code]
        responses[str(code)] = response
    return responses


def _ok(description: str, schema: dict, status: int = 200) -> dict:
    return {str(status): {"description": description, "content": {JSON: {"schema": schema}}}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _list_parameters() -> list[dict]:
    parameters = [
        _query(name, {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NO_NUL}, "Exact.")
        for name, limit in filters.TEXT_FILTERS.items()
    ]
    action = {
        "type": "string",
        "maxLength": validation.MAX_ACTION,
        "pattern": f"^({filters.ACTION_FILTER_RE.pattern})$",
    }
    return [
        *parameters,
        _query("action", action, "An exact action, or a prefix ending in .* (invoice.*)."),
        _query("outcome", {"enum": list(Outcome.values)}, "Exact."),
        _query("since", _datetime("RFC 3339."), "Events that occurred at or after this time."),
        _query("until", _datetime("RFC 3339."), "Events that occurred before this time."),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": filters.MAX_LIMIT, "default": filters.DEFAULT_LIMIT},
            "Page size (ASCII digits).",
        ),
        _query(
            "cursor",
            {"type": "string"},
            "`next_cursor` of the previous page, with the same filters; any other value is a 400.",
        ),
    ]


def _paths() -> dict:
    write_errors = (400, 401, 403, 408, 409, 413, 415, 500, 503)
    idempotency_header = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": HEADER_KEY},
        "description": "Instead of the body's idempotency_key (or equal to it).",
    }
    no_auth = {"security": []}
    status = {
        "type": "object",
        "properties": {"status": {"const": "ok"}, "database": {"type": "string"}},
        "required": ["status"],
    }
    event_link = {
        "operationId": "event_get",
        "parameters": {"event_id": "$response.body#/id"},
    }
    return {
        "/api/v1/events": {
            "get": {
                "operationId": "events_list",
                "summary": "List events, newest first",
                "parameters": _list_parameters(),
                "responses": _responses(_ok("A page.", _ref("EventPage")), 400, 401, 403, 500, 503),
            },
            "post": {
                "operationId": "event_create",
                "summary": "Record one event",
                "parameters": [idempotency_header],
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Event")}}},
                "responses": _responses(
                    {
                        "201": {
                            "description": "Stored.",
                            "content": {JSON: {"schema": _ref("Ack")}},
                            "links": {"GetEvent": event_link},
                        },
                        **_ok("Stored before with this idempotency key and body.", _ref("Ack")),
                    },
                    *write_errors,
                ),
            },
        },
        "/api/v1/events/batch": {
            "post": {
                "operationId": "events_create_batch",
                "summary": "Record up to 1000 events, each accepted or refused on its own",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Batch")}}},
                "responses": _responses(
                    _ok("One result per event, in order.", _ref("BatchResults")),
                    *(code for code in write_errors if code != 409),
                ),
            }
        },
        "/api/v1/events/{event_id}": {
            "get": {
                "operationId": "event_get",
                "summary": "One event",
                "parameters": [
                    {
                        "name": "event_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": _responses(_ok("The event.", _ref("EventOut")), 401, 403, 404, 500, 503),
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                **no_auth,
                "responses": _ok("OpenAPI 3.1.", {"type": "object"}),
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                **no_auth,
                "responses": _ok("The process serves.", status),
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness",
                **no_auth,
                "responses": _responses(_ok("The database answers.", status), 503),
            }
        },
    }


def openapi_document() -> dict:
    batch = {
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.AUDITLOG_MAX_BATCH_EVENTS,
                "items": {
                    "description": (
                        "An event as POST /api/v1/events takes it (schema Event). Each is checked "
                        "on its own: an invalid one is its result's 400, never the whole batch's."
                    )
                },
            }
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "auditlog",
            "version": "1",
            "description": (
                "Records user actions and never loses one. Errors are "
                '{"error": {"code", "message", "fields"?}} everywhere under /api/. A JSON object '
                "that gives a key twice is refused. Bodies: at most "
                f"{settings.AUDITLOG_MAX_EVENT_BYTES} bytes for one event, "
                f"{settings.AUDITLOG_MAX_BATCH_BYTES} for a batch."
            ),
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Event": _event_in(),
                "MetadataValue": _metadata_value(),
                "Batch": batch,
                "EventOut": _event_out(),
                "EventPage": {
                    "type": "object",
                    "properties": {
                        "results": {"type": "array", "items": _ref("EventOut")},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                    "required": ["results", "next_cursor"],
                    "additionalProperties": False,
                },
                "Ack": _ack(),
                "BatchResults": _batch_results(),
                "Error": _error(),
            },
        },
    }
