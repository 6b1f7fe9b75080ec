"""The OpenAPI 3.1 document of the API, served at /api/v1/openapi.json.

Built from what the validation and the JSON form themselves use (the event's definition, each
field's rule with its limits and patterns, the error codes), so they cannot drift;
tests/test_openapi.py checks every field rule both ways. What JSON Schema cannot say (an
`occurred_at` at most 5 minutes ahead of the server's clock, metadata's serialized size and
depth, the body and header idempotency keys agreeing) is in the descriptions.
"""

from datetime import datetime
from uuid import UUID

from django.conf import settings

from auditlog.events import validation
from auditlog.events.datetimes import datetime_schema
from auditlog.events.definition import EVENT_FIELDS, EventField, json_form
from auditlog.events.metadata import metadata_value_schema
from auditlog.events.rules import NO_NUL, Choice, nullable
from auditlog.http import errors
from auditlog.models import ApiKey, Outcome
from auditlog.reading import filters

# The Idempotency-Key header as the server sees it: HTTP drops spaces and tabs around a value.
HEADER_KEY = "^[ \\t]*[\\x21-\\x7e]([\\x20-\\x7e]{0,126}[\\x21-\\x7e])?[ \\t]*$"
JSON = "application/json"
TEXT = "text/plain"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _event_in() -> dict:
    """The request form: each member as its rule states it; an object with a required member
    is required itself, any other may be null."""
    properties, required = {}, []
    for name, member in validation.REQUEST_FORM.items():
        if isinstance(member, EventField):
            properties[name] = member.rule.schema()
            if member.rule.required:
                required.append(name)
            continue
        nested = {
            "type": "object",
            "properties": {key: field.rule.schema() for key, field in member.items()},
            "additionalProperties": False,
        }
        if names := [key for key, field in member.items() if field.rule.required]:
            nested["required"] = names
            required.append(name)
        properties[name] = nested if names else nullable(nested)
    return {
        "type": "object",
        "description": "An event. null on an optional field means the same as leaving it out.",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# The JSON form of a stored value, by its type (auditlog.reading.serialization).
_STORED = {
    UUID: {"type": "string", "format": "uuid"},
    datetime: {"type": "string", "format": "date-time"},
    str: {"type": "string"},
    str | None: {"type": ["string", "null"]},
    dict: {"type": "object"},
    ApiKey: {
        "type": "object",
        "properties": {"name": {"type": "string"}, "prefix": {"type": "string"}},
        "required": ["name", "prefix"],
        "additionalProperties": False,
    },
}


def _stored(field: EventField) -> dict:
    if isinstance(field.rule, Choice):
        return {"enum": list(field.rule.choices)}
    return _STORED[field.type]


def _event_out() -> dict:
    properties = {}
    for name, member in json_form(field for field in EVENT_FIELDS if field.json).items():
        if isinstance(member, EventField):
            properties[name] = _stored(member)
        else:
            properties[name] = {
                "type": "object",
                "properties": {key: _stored(field) for key, field in member.items()},
                "required": list(member),
                "additionalProperties": False,
            }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


RECEIPT_PROPERTY = {
    "type": "string",
    "description": (
        "With `Prefer: receipt`, where the service has a receipt key: a C2SP signed note naming the "
        "source and, per event acknowledged, its id, received_at and payload hash (docs/trail-format.md); "
        "GET /api/v1/trail/receipt-keys gives the verifier keys."
    ),
}


def _ack() -> dict:
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "received_at": {"type": "string", "format": "date-time"},
            "receipt": RECEIPT_PROPERTY,
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
                    "request_id": {
                        "type": "string",
                        "description": "The request's id: its X-Request-ID header and log line.",
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
        "properties": {
            "results": {"type": "array", "items": {"anyOf": [stored, refused]}},
            "receipt": RECEIPT_PROPERTY,
        },
        "required": ["results"],
        "additionalProperties": False,
    }


ERROR_DESCRIPTIONS = {
    400: "Invalid JSON, or invalid fields (named in `fields`).",
    401: "Missing, unknown or revoked API key.",
    403: "The API key lacks the scope.",
    404: "No such event, checkpoint, tree size or proof.",
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


# Any request can have one: gunicorn answers a request line over 8190 bytes itself, in HTML,
# before the app (config/gunicorn.conf.py); deploy/nginx.conf answers from 8000 bytes, in JSON.
URI_TOO_LONG = {
    "description": "The request line is longer than 8190 bytes (gunicorn, HTML; nginx in front: 8000, JSON).",
    "content": {"text/html": {"schema": {"type": "string"}}, JSON: {"schema": _ref("Error")}},
}


def _responses(ok: dict, *codes: int) -> dict:
    responses = dict(ok) | {"414": URI_TOO_LONG}
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
        "maxLength": filters.MAX_ACTION,
        "pattern": f"^({filters.ACTION_FILTER_RE.pattern})$",
    }
    return [
        *parameters,
        _query("action", action, "An exact action, or a prefix ending in .* (invoice.*)."),
        _query("outcome", {"enum": list(Outcome.values)}, "Exact."),
        _query("since", datetime_schema("RFC 3339."), "Events that occurred at or after this time."),
        _query("until", datetime_schema("RFC 3339."), "Events that occurred before this time."),
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
    prefer_header = {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "examples": ["receipt"]},
        "description": "`receipt` asks for a signed receipt in the answer (RFC 7240; `Preference-Applied: "
        "receipt` says it was given).",
    }
    no_auth = {"security": []}
    status = {
        "type": "object",
        "properties": {"status": {"const": "ok"}, "database": {"type": "string"}},
        "required": ["status"],
    }
    tree_size = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
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
                "parameters": [idempotency_header, prefer_header],
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
                "parameters": [prefer_header],
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
        "/api/v1/events/{event_id}/proof": {
            "get": {
                "operationId": "event_proof",
                "summary": "The event's RFC 9162 inclusion proof in the trail's Merkle tree",
                "parameters": [
                    {
                        "name": "event_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                    _query(
                        "tree_size", tree_size, "The tree to prove it in (default: the latest checkpoint's)."
                    ),
                ],
                "responses": _responses(
                    _ok("The proof (docs/trail-format.md).", _ref("InclusionProof")),
                    400,
                    401,
                    403,
                    404,
                    500,
                    503,
                ),
            }
        },
        "/api/v1/trail/checkpoint": {
            "get": {
                "operationId": "trail_checkpoint",
                "summary": "The latest signed checkpoint (a C2SP tlog-checkpoint in a signed note)",
                "responses": _responses(
                    {
                        "200": {
                            "description": "The signed note.",
                            "content": {TEXT: {"schema": {"type": "string"}}},
                        }
                    },
                    401,
                    403,
                    404,
                    500,
                    503,
                ),
            }
        },
        "/api/v1/trail/consistency": {
            "get": {
                "operationId": "trail_consistency",
                "summary": "The RFC 9162 consistency proof between two tree sizes",
                "parameters": [
                    {**_query("first", tree_size, "The earlier tree's size."), "required": True},
                    {**_query("second", tree_size, "The later tree's size."), "required": True},
                ],
                "responses": _responses(
                    _ok("The proof (docs/trail-format.md).", _ref("ConsistencyProof")),
                    400,
                    401,
                    403,
                    404,
                    500,
                    503,
                ),
            }
        },
        "/api/v1/trail/verifier-keys": {
            "get": {
                "operationId": "trail_verifier_keys",
                "summary": "The verifier keys of the checkpoints, current first, one per line (C2SP vkey)",
                **no_auth,
                "responses": _responses(
                    {"200": {"description": "The keys.", "content": {TEXT: {"schema": {"type": "string"}}}}},
                    404,
                    500,
                ),
            }
        },
        "/api/v1/trail/receipt-keys": {
            "get": {
                "operationId": "trail_receipt_keys",
                "summary": "The verifier keys of the receipts, current first, one per line (C2SP vkey)",
                **no_auth,
                "responses": _responses(
                    {"200": {"description": "The keys.", "content": {TEXT: {"schema": {"type": "string"}}}}},
                    404,
                    500,
                ),
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


def _proofs() -> dict:
    size = {"type": "integer", "minimum": 1}
    hashes = {
        "type": "array",
        "items": {"type": "string", "contentEncoding": "base64"},
        "description": "SHA-256 hashes, base64, in the order RFC 9162 §2.1 gives them.",
    }

    def proof(properties: dict, description: str) -> dict:
        return {
            "type": "object",
            "description": description,
            "properties": {**properties, "hashes": hashes},
            "required": [*properties, "hashes"],
            "additionalProperties": False,
        }

    return {
        "InclusionProof": proof(
            {
                "leaf_index": {"type": "integer", "minimum": 0},
                "tree_size": size,
                "leaf": {
                    "type": "string",
                    "contentEncoding": "base64",
                    "description": "The leaf's bytes (RFC 8785 JSON, docs/trail-format.md); its hash is "
                    "SHA-256(0x00 || leaf).",
                },
            },
            "RFC 9162 §2.1.3 inclusion proof of one event's leaf in the tree of tree_size leaves.",
        ),
        "ConsistencyProof": proof(
            {"first": size, "second": size},
            "RFC 9162 §2.1.4 consistency proof: the tree of `first` leaves is a prefix of the tree of "
            "`second` leaves.",
        ),
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
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "An API key's token. Its scopes: write (POST events); read (GET its own "
                        "source's events: another source's and this service's own answer 404 or "
                        "are not listed); read_all (GET every source's events, this service's own "
                        "included)."
                    ),
                }
            },
            "schemas": {
                "Event": _event_in(),
                "MetadataValue": metadata_value_schema(),
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
                **_proofs(),
            },
        },
    }
