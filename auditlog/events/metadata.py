"""An event's metadata: any JSON object, within limits of size and depth, without NUL."""

import re
from dataclasses import dataclass
from typing import Any

from auditlog.events.formats import metadata_canonical
from auditlog.events.rules import (
    MAX_SAFE_INTEGER,
    MSG_NOT_OBJECT,
    MSG_NUL,
    MSG_SURROGATE,
    NO_NUL,
    DuplicateKeys,
    Errors,
    Request,
    Rule,
    encodable,
    nullable,
)

MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 32
NUL_ESCAPE = "\\u0000"
# Numbers beyond I-JSON's exact range (MAX_SAFE_INTEGER), integers or not: the trail's leaves are
# RFC 8785 JSON, whose numbers are doubles, so a larger integer could change unseen in its last
# digits; and PostgreSQL's jsonb gives a large double such as 1e16 back as an integer.
LONG_DIGITS = re.compile(r"\d{16}|\de\+")  # 16 digits, or a float written with a positive exponent
MSG_NUMBER_RANGE = "Numbers must be finite and within the range of a double (about 1.8e308)."
MSG_METADATA_INTEGER_RANGE = (
    f"Numbers in it must be at most {MAX_SAFE_INTEGER} in size (I-JSON, the range JSON readers "
    "keep exact); send larger ones as strings."
)
MSG_METADATA_SIZE = f"Must be at most {MAX_METADATA_BYTES} bytes serialized."
MSG_METADATA_DEPTH = f"Must not nest deeper than {MAX_METADATA_DEPTH} levels."
MSG_DUPLICATE_METADATA = "An object in it gives a key more than once."


@dataclass(frozen=True, slots=True)
class Metadata(Rule):
    """A JSON object of at most MAX_METADATA_BYTES once serialized and MAX_METADATA_DEPTH levels
    deep, without NUL. Its clean value is a pair: the object and its canonical JSON
    (metadata_canonical), serialized once, then used for the size limit, the payload hash and
    storage."""

    gives = dict

    @property
    def absent(self) -> dict:
        return {}

    def validate(self, errors: Errors, path: str, value: Any, request: Request) -> tuple[dict, str]:
        if value is None:
            return {}, "{}"
        if not isinstance(value, dict):
            errors.add(path, MSG_NOT_OBJECT)
            return {}, "{}"
        try:
            serialized = metadata_canonical(value)
        except ValueError:  # NaN or an infinity (1e400): the event's own 400, not the database's 500
            errors.add(path, MSG_NUMBER_RANGE)
            return {}, "{}"
        try:
            size = len(serialized.encode("utf-8"))
        except UnicodeEncodeError:
            errors.add(path, MSG_SURROGATE)
            return {}, "{}"
        # Walk only where the text could hide a NUL (serialized as \u0000) or too deep a nesting.
        could_hide = (
            request.duplicates
            or NUL_ESCAPE in serialized
            or serialized.count("{") + serialized.count("[") > MAX_METADATA_DEPTH
            or LONG_DIGITS.search(serialized)
        )
        if could_hide and (problem := _metadata_problem(value)):
            errors.add(path, problem)
            return {}, "{}"
        if size > MAX_METADATA_BYTES:
            errors.add(path, MSG_METADATA_SIZE)
        return value, serialized

    def trusted(self, value: dict) -> tuple[dict, str]:
        return value, metadata_canonical(value)

    def schema(self) -> dict:
        return nullable(
            {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": {"$ref": "#/components/schemas/MetadataValue"},
                "description": (
                    f"At most {MAX_METADATA_BYTES} bytes once serialized compactly in UTF-8, "
                    f"and {MAX_METADATA_DEPTH} levels deep; numbers within ±(2^53 - 1) "
                    "(I-JSON). Convention: a `changes` object mapping a field's name to "
                    "`[before, after]` (what changed, as Django audit apps record it) is shown "
                    "by the admin as a table of field, before and after."
                ),
            }
        )


def metadata_value_schema() -> dict:
    """The OpenAPI component MetadataValue: any JSON value, without NUL in its text."""
    value = {"$ref": "#/components/schemas/MetadataValue"}
    return {
        "anyOf": [
            {"type": ["null", "boolean"]},
            {"type": "number", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": value},
            {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": value},
        ]
    }


def _metadata_problem(value: dict) -> str | None:
    """Walk without recursion: NUL (PostgreSQL's jsonb rejects it), lone surrogates, depth,
    repeated keys, integers beyond 2^53."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            return MSG_METADATA_DEPTH
        if type(node) is DuplicateKeys:
            return MSG_DUPLICATE_METADATA
        if isinstance(node, dict):
            children = list(node.values())
            strings = node.keys()
        elif isinstance(node, list):
            children, strings = node, ()
        else:
            if type(node) in (int, float) and not -MAX_SAFE_INTEGER <= node <= MAX_SAFE_INTEGER:
                return MSG_METADATA_INTEGER_RANGE
            children, strings = (), (node,) if isinstance(node, str) else ()
        for text in strings:
            if "\x00" in text:
                return MSG_NUL
            if not text.isascii() and not encodable(text):
                return MSG_SURROGATE
        stack.extend((child, depth + 1) for child in children)
    return None
