"""The rules a producer's field is checked by (auditlog.events.definition gives each field one).

A rule turns one value of the request into its clean value, or records what is wrong with it
under the field's dotted path (`actor.id`), and states the same constraints as JSON Schema for
the OpenAPI document; tests/test_openapi.py checks the two agree on every edge. What JSON
Schema cannot say (how far ahead of the server's clock, metadata's serialized size and depth,
the body and header idempotency keys agreeing) is in the schema's description.

Here: the rules' common ground and the plain ones (text, a choice, an IP address, the
idempotency key); date-times in auditlog.events.datetimes, metadata in auditlog.events.metadata.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

ACTION_CHARS = "[a-z0-9_.:-]"
ACTION_RE = re.compile(f"{ACTION_CHARS}+")
KEY_RE = re.compile(r"[\x20-\x7e]{1,128}")  # printable ASCII
# Ids given as JSON numbers: integers that every JSON parser reads exactly (RFC 7493, I-JSON),
# written 42 or 42.0 (JSON Schema's "integer" takes both).
MAX_SAFE_INTEGER = 2**53 - 1

MSG_REQUIRED = "This field is required."
MSG_NOT_STRING = "Must be a string."
MSG_NOT_OBJECT = "Must be a JSON object."
MSG_BLANK = "Must not be blank."
MSG_NUL = "Must not contain NUL characters."
MSG_SURROGATE = "Must be valid Unicode text."
MSG_ACTION = "Use lowercase letters, digits and _ . : - only, e.g. invoice.delete."
MSG_OUTCOME = "Must be one of: success, failure."
MSG_IP = "Must be an IPv4 or IPv6 address (no zone id)."
MSG_KEY = "Must be 1 to 128 printable ASCII characters."
MSG_INTEGER_RANGE = (
    f"Must be an integer of at most {MAX_SAFE_INTEGER} in size (I-JSON); send larger ids as strings."
)
MSG_KEY_MISMATCH = "Differs from the Idempotency-Key header."

# JSON Schema: text without NUL (PostgreSQL refuses it).
NO_NUL = "^[^\\x00]*$"


def msg_too_long(limit: int) -> str:
    return f"Must be at most {limit} characters."


class DuplicateKeys(dict):
    """A JSON object that gave a key more than once (it holds the last value): refused where it
    is, as the event's own 400, since the stored event must mean one thing. `names`: those keys."""

    __slots__ = ("names",)

    def __init__(self, pairs: list):
        super().__init__(pairs)
        seen: set = set()
        self.names = list(dict.fromkeys(name for name, _ in pairs if name in seen or seen.add(name)))


class Errors(Protocol):
    def add(self, path: str, message: str) -> None: ...


class Request(NamedTuple):
    """What a rule may need besides its value."""

    now: datetime  # the server's clock
    header_key: str | None  # the Idempotency-Key header
    duplicates: bool  # the body repeated a key somewhere (see DuplicateKeys)


class Rule:
    """`validate` returns the clean value (`gives`), or adds errors under `path` and returns
    anything; `schema` is the JSON Schema of what the request may send. `absent`: the value of
    a field the producer left out (or sent as null)."""

    __slots__ = ()
    required = False
    gives: Any = object
    absent: Any = None

    def validate(self, errors: Errors, path: str, value: Any, request: Request) -> Any:
        raise NotImplementedError

    def schema(self) -> dict:
        raise NotImplementedError

    def trusted(self, value: Any) -> Any:
        """The clean value of a value this service gives itself (its own events): not checked."""
        return value


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True, slots=True)
class Text(Rule):
    """A string of at most `max_length` characters, without NUL; `integers`: a JSON integer
    is taken as its decimal text (ids often are numbers: `"id": 42`)."""

    max_length: int
    required: bool = False
    integers: bool = False
    # For required text: what the whole of it must match (never a NUL), else `pattern_message`.
    pattern: re.Pattern | None = None
    pattern_message: str = ""
    example: str | None = None
    gives = str
    absent = ""

    def __post_init__(self):
        if self.pattern is not None and not self.required:
            raise ValueError("a pattern is for required text: the schema would refuse a blank one")

    def validate(self, errors: Errors, path: str, value: Any, request: Request) -> str:
        # The common case first: a non-empty ASCII string within the limit and without NUL.
        if (
            type(value) is str
            and 0 < len(value) <= self.max_length
            and value.isascii()
            and "\x00" not in value
        ):
            text = value
        else:
            text = self._uncommon(errors, path, value)
        if self.pattern is not None and text and path not in errors and not self.pattern.fullmatch(text):
            errors.add(path, self.pattern_message)
        return text

    def _uncommon(self, errors: Errors, path: str, value: Any) -> str:
        if value is None or value == "":
            if self.required:
                errors.add(path, MSG_REQUIRED if value is None else MSG_BLANK)
            return ""
        integral = type(value) is int or (type(value) is float and value.is_integer())  # not bool
        if self.integers and integral:
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                errors.add(path, MSG_INTEGER_RANGE)
                return ""
            value = str(int(value))
        if not isinstance(value, str):
            errors.add(path, MSG_NOT_STRING)
            return ""
        if len(value) > self.max_length:
            errors.add(path, msg_too_long(self.max_length))
        elif "\x00" in value:
            errors.add(path, MSG_NUL)
        elif not value.isascii() and not encodable(value):
            errors.add(path, MSG_SURROGATE)
        return value

    def schema(self) -> dict:
        text = {"type": "string", "maxLength": self.max_length}
        text["pattern"] = NO_NUL if self.pattern is None else f"^{self.pattern.pattern}$"
        if self.required:
            text["minLength"] = 1
        if self.example is not None:
            text["examples"] = [self.example]
        if self.integers:
            integer = {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER}
            text = {"anyOf": [text, integer]}
        return text if self.required else nullable(text)

    def trusted(self, value: str) -> str:
        return value[: self.max_length]


def encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Choice(Rule):
    """One of `choices`; `default` when left out."""

    choices: tuple[str, ...]
    default: str
    message: str
    gives = str

    @property
    def absent(self) -> str:
        return self.default

    def validate(self, errors: Errors, path: str, value: Any, request: Request) -> str:
        if value is None:
            return self.default
        if not isinstance(value, str) or value not in self.choices:
            errors.add(path, self.message)
        return value

    def schema(self) -> dict:
        return nullable({"enum": list(self.choices)})


@dataclass(frozen=True, slots=True)
class IpAddress(Rule):
    """An IPv4 or IPv6 address, in its canonical text (2001:db8::1)."""

    gives = str | None

    def validate(self, errors: Errors, path: str, value: Any, request: Request) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            # Fast path for the common case, an IPv4 address already in canonical form (what
            # ipaddress would return): the C parser round trip is a fraction of ipaddress's cost.
            try:
                if socket.inet_ntoa(socket.inet_pton(socket.AF_INET, value)) == value:
                    return value
            except (OSError, ValueError):
                pass
        try:
            # A zone id (fe80::1%eth0) means something only on the producer's host, and
            # PostgreSQL's inet refuses it.
            address = ipaddress.ip_address(value if isinstance(value, str) and "%" not in value else "")
        except ValueError:
            errors.add(path, MSG_IP)
            return None
        return str(address)

    def schema(self) -> dict:
        return nullable(
            {
                "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
                "type": "string",
                "description": "Without a zone id; send null or leave it out when unknown.",
            }
        )


@dataclass(frozen=True, slots=True)
class IdempotencyKey(Rule):
    """KEY_RE, given in the body or in the Idempotency-Key header (equal if in both)."""

    gives = str | None

    def validate(self, errors: Errors, path: str, value: Any, request: Request) -> str | None:
        header_key = request.header_key
        key = value if value is not None else header_key
        if key is None:
            return None
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            errors.add(path, MSG_KEY)
            return None
        if value is not None and header_key is not None and value != header_key:
            errors.add(path, MSG_KEY_MISMATCH)
        return key

    def schema(self) -> dict:
        return nullable(
            {
                "type": "string",
                "pattern": f"^{KEY_RE.pattern}$",
                "description": "Unique per API key; equal to the Idempotency-Key header if both.",
            }
        )
