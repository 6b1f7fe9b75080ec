"""Schemathesis hooks: what the OpenAPI document states in words but JSON Schema cannot.

Each one only turns a request the document calls valid into one the server must accept, reading
the rule from the document itself; a request it calls invalid is left as generated.
"""

import re
from datetime import UTC, datetime, timedelta

import schemathesis


def _pattern(case, *path) -> re.Pattern:
    node = case.operation.schema.raw_schema
    for key in path:
        node = node[key]
    return re.compile(node)


def _event_schema(case) -> dict:
    return case.operation.schema.raw_schema["components"]["schemas"]["Event"]["properties"]


@schemathesis.hook
def before_call(context, case, kwargs):
    method = case.operation.method.upper()
    # A cursor is only ever one the server issued: a generated string is refused, as the
    # document says. Paging is tested in the suite (tests/test_views_read.py).
    if case.operation.path == "/api/v1/events" and method == "GET" and isinstance(case.query, dict):
        case.query.pop("cursor", None)
    if case.operation.path == "/api/v1/events" and method == "POST":
        _event_within_the_clock(case)
        _one_idempotency_key(case)


def _event_within_the_clock(case) -> None:
    """occurred_at must not be more than 5 minutes after the server's clock: a valid time later
    than now becomes an hour ago, keeping its form (offset, fraction)."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("occurred_at"), str):
        return
    grammar = re.compile(_event_schema(case)["occurred_at"]["anyOf"][0]["pattern"])
    text = body["occurred_at"]
    if not grammar.match(text):
        return
    try:
        when = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return  # not a real date: left invalid
    now = datetime.now(UTC)
    if when <= now:
        return
    body["occurred_at"] = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")


def _one_idempotency_key(case) -> None:
    """The Idempotency-Key header and the body's idempotency_key must be equal when both are
    given and valid: the header then takes the body's value, or is left out when that value
    starts or ends with a space or a tab."""
    headers = case.headers or {}
    body = case.body if isinstance(case.body, dict) else {}
    header, key = headers.get("Idempotency-Key"), body.get("idempotency_key")
    if not isinstance(header, str) or not isinstance(key, str):
        return
    parameters = case.operation.definition.raw["parameters"]
    header_grammar = re.compile(
        next(p for p in parameters if p["name"] == "Idempotency-Key")["schema"]["pattern"]
    )
    key_grammar = re.compile(_event_schema(case)["idempotency_key"]["anyOf"][0]["pattern"])
    if not (header_grammar.match(header) and key_grammar.match(key)):
        return
    if key != key.strip(" \t"):
        # HTTP drops the spaces around a header value, so no header can equal this key: the
        # document's other choice, the body's key alone, is what a client sends.
        del headers["Idempotency-Key"]
    elif header.strip(" \t") != key:
        headers["Idempotency-Key"] = key
