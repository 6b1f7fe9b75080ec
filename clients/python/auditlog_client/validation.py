"""An event checked by the service's own rules before it is written to the outbox: what the
service would refuse with a 400 is refused here, at record(), where the caller can still fix
it, rather than found later as a dead letter.

The rules are the service's OpenAPI components `Event` and `MetadataValue`, shipped beside this
module as event.schema.json with the limits a schema cannot say (metadata's serialized size
and depth, the future skew of occurred_at). The service's test suite fails when the file and
the service differ (tests/client/test_validation.py); `make client-schema` rewrites it.
"""

import ipaddress
import json
import math
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any


class EventInvalid(ValueError):
    """The event breaks the service's rules: `fields` maps each field's path to its problems, as
    the service's 400 does."""

    def __init__(self, fields: dict[str, list[str]]):
        self.fields = fields
        listed = "; ".join(f"{path}: {' '.join(problems)}" for path, problems in fields.items())
        super().__init__(f"invalid event: {listed}")


@cache
def rules() -> dict:
    return json.loads(resources.files(__package__).joinpath("event.schema.json").read_text("utf-8"))


def event_check(event: dict, now: datetime | None = None) -> None:
    """Raise EventInvalid unless the service would accept `event` (a dict of JSON values)."""
    errors: dict[str, list[str]] = {}
    _check(event, rules()["Event"], "", errors)
    if not errors:
        _check_limits(event, errors, now or datetime.now(UTC))
    if errors:
        raise EventInvalid(errors)


def _check_limits(event: dict, errors: dict, now: datetime) -> None:
    limits = rules()["limits"]
    metadata = event.get("metadata")
    if metadata is not None:
        try:
            text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            size = len(text.encode("utf-8"))
        except (ValueError, UnicodeEncodeError):
            errors.setdefault("metadata", []).append("Must be valid Unicode JSON with finite numbers.")
            return
        if size > limits["metadata_bytes"]:
            errors.setdefault("metadata", []).append(
                f"Must be at most {limits['metadata_bytes']} bytes serialized."
            )
        if _depth(metadata) > limits["metadata_depth"]:
            errors.setdefault("metadata", []).append(
                f"Must not nest deeper than {limits['metadata_depth']} levels."
            )
    occurred = event.get("occurred_at")
    if isinstance(occurred, str):
        moment = datetime.fromisoformat(occurred.upper().replace("Z", "+00:00"))
        if moment - now > timedelta(seconds=limits["future_skew_seconds"]):
            errors.setdefault("occurred_at", []).append("Must not be more than 5 minutes in the future.")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _valid(value: Any, schema: dict) -> bool:
    errors: dict[str, list[str]] = {}
    _check(value, schema, "", errors)
    return not errors


@cache
def _pattern(text: str) -> re.Pattern:
    # JSON Schema patterns are searched; "$" must not match before a final newline as Python's does.
    return re.compile(text[:-1] + r"\Z" if text.endswith("$") else text)


def _types(schema: dict) -> set[str]:
    if "$ref" in schema:
        schema = rules()[schema["$ref"].rsplit("/", 1)[-1]]
    wanted = schema.get("type")
    if wanted is None:
        return set().union(*(_types(option) for option in schema.get("anyOf", ())))
    return {wanted} if isinstance(wanted, str) else set(wanted)


def _type_of(value: Any) -> set[str]:
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"} | ({"integer"} if value.is_integer() else set())
    if isinstance(value, str):
        return {"string"}
    if isinstance(value, list | tuple):
        return {"array"}
    if isinstance(value, dict):
        return {"object"}
    return {type(value).__name__}


def _check(value: Any, schema: dict, path: str, errors: dict[str, list[str]]) -> None:  # noqa: C901
    """The subset of JSON Schema the service's Event uses."""

    def fail(message: str) -> None:
        errors.setdefault(path or "event", []).append(message)

    if "$ref" in schema:
        schema = rules()[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema and not any(_valid(value, option) for option in schema["anyOf"]):
        # One option of the value's type (an object where an object or null is allowed): its
        # errors, which name the fields inside.
        typed = [option for option in schema["anyOf"] if _type_of(value) & _types(option)]
        if len(typed) == 1:
            _check(value, typed[0], path, errors)
        else:
            fail("Not an accepted value." if value is not None else "Must not be null.")
        return
    if "enum" in schema and value not in schema["enum"]:
        fail(f"Must be one of: {', '.join(map(str, schema['enum']))}.")
        return
    wanted = schema.get("type")
    if wanted is not None:
        wanted = {wanted} if isinstance(wanted, str) else set(wanted)
        if not wanted & _type_of(value):
            fail(f"Must be of type {' or '.join(sorted(wanted))}.")
            return
    if isinstance(value, float) and not math.isfinite(value):
        fail("Numbers must be finite.")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            fail("Must be valid Unicode text.")
            return
        if len(value) < schema.get("minLength", 0):
            fail("This field is required." if not value else "Too short.")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            fail(f"Ensure this value has at most {schema['maxLength']} characters.")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            fail("Does not match the rule " + schema["pattern"])
        if schema.get("format") in ("ipv4", "ipv6") and not _ip(value, schema["format"]):
            fail(f"Must be an {schema['format'].upper()} address (no zone id).")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf)):
        fail(f"Must be within {schema.get('minimum')} and {schema.get('maximum')}.")
    if isinstance(value, list | tuple) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{index}]", errors)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if value.get(name) is None:
                errors.setdefault(_join(path, name), []).append("This field is required.")
        for name, item in value.items():
            if not isinstance(name, str):
                fail("Object keys must be strings.")
                continue
            if "propertyNames" in schema:
                _check(name, schema["propertyNames"], path, errors)
            if name in properties:
                _check(item, properties[name], _join(path, name), errors)
            elif schema.get("additionalProperties") is False:
                errors.setdefault(_join(path, name), []).append("Unknown field.")
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(item, schema["additionalProperties"], _join(path, name), errors)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _ip(value: str, version: str) -> bool:
    if "%" in value:
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return address.version == (4 if version == "ipv4" else 6)
