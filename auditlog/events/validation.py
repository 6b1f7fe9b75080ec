"""Turn request JSON into clean values or field errors under dotted paths (`actor.id`)."""

import ipaddress
import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.utils import timezone

from auditlog.events.formats import PAYLOAD_HASH_V1, metadata_canonical
from auditlog.models import Outcome

MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 32
NUL_ESCAPE = "\\u0000"
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_ACTION = 100
ACTION_CHARS = "[a-z0-9_.:-]"
ACTION_RE = re.compile(f"{ACTION_CHARS}+")
MAX_USER_AGENT = 512
KEY_RE = re.compile(r"[\x20-\x7e]{1,128}")  # printable ASCII
# Ids given as JSON numbers: integers that every JSON parser reads exactly (RFC 7493, I-JSON),
# written 42 or 42.0 (JSON Schema's "integer" takes both).
MAX_SAFE_INTEGER = 2**53 - 1

MSG_REQUIRED = "This field is required."
MSG_UNKNOWN = "Unknown field."
MSG_NOT_STRING = "Must be a string."
MSG_NOT_OBJECT = "Must be a JSON object."
MSG_BLANK = "Must not be blank."
MSG_NUL = "Must not contain NUL characters."
MSG_SURROGATE = "Must be valid Unicode text."
MSG_ACTION = "Use lowercase letters, digits and _ . : - only, e.g. invoice.delete."
MSG_DATETIME = (
    "Must be an RFC 3339 date-time from the year 1970, e.g. 2026-01-31T12:00:00Z or "
    "2026-01-31T13:00:00.250+01:00."
)
MSG_FUTURE = "Must not be more than 5 minutes in the future."
MSG_OUTCOME = "Must be one of: success, failure."
MSG_IP = "Must be an IPv4 or IPv6 address (no zone id)."
MSG_NUMBER_RANGE = "Numbers must be finite and within the range of a double (about 1.8e308)."
MSG_METADATA_SIZE = f"Must be at most {MAX_METADATA_BYTES} bytes serialized."
MSG_METADATA_DEPTH = f"Must not nest deeper than {MAX_METADATA_DEPTH} levels."
MSG_KEY = "Must be 1 to 128 printable ASCII characters."
MSG_INTEGER_RANGE = (
    f"Must be an integer of at most {MAX_SAFE_INTEGER} in size (I-JSON); send larger ids as strings."
)
MSG_DUPLICATE = "Given more than once in the same object."
MSG_DUPLICATE_METADATA = "An object in it gives a key more than once."
MSG_KEY_MISMATCH = "Differs from the Idempotency-Key header."


def msg_too_long(limit: int) -> str:
    return f"Must be at most {limit} characters."


class EventInput(NamedTuple):
    """A validated event. A NamedTuple: immutable like a frozen dataclass, built in a third of
    the time, which counts 1,000 times per batch."""

    action: str
    actor_id: str
    actor_type: str
    actor_name: str
    target_type: str
    target_id: str
    target_name: str
    occurred_at: datetime | None
    outcome: str
    ip_address: str | None
    user_agent: str
    metadata: dict
    metadata_json: str  # canonical: sorted keys, compact
    idempotency_key: str | None
    payload_hash: str


MSG_INVALID_EVENT = "The event is invalid; see fields."
MSG_EVENT_NOT_OBJECT = "An event must be a JSON object."


class DuplicateKeys(dict):
    """A JSON object that gave a key more than once (it holds the last value): refused where it
    is, as the event's own 400, since the stored event must mean one thing. `names`: those keys."""

    __slots__ = ("names",)

    def __init__(self, pairs: list):
        super().__init__(pairs)
        seen: set = set()
        self.names = list(dict.fromkeys(name for name, _ in pairs if name in seen or seen.add(name)))


class ValidationFailed(Exception):
    def __init__(self, fields: dict[str, list[str]], message: str = MSG_INVALID_EVENT):
        super().__init__(message)
        self.message = message
        self.fields = fields


# What one event's errors may add up to: a body of a million unknown keys, or of one key a
# megabyte long, must not turn into an error response larger than itself.
MAX_FIELD_ERRORS = 20
MAX_FIELD_NAME = 100
FIELD_MORE = "..."
MSG_MORE_ERRORS = "More errors not shown."


class _Errors(dict):
    def add(self, path: str, message: str) -> None:
        if len(path) > MAX_FIELD_NAME:
            path = path[:MAX_FIELD_NAME] + FIELD_MORE
        if path not in self and len(self) >= MAX_FIELD_ERRORS:
            self[FIELD_MORE] = [MSG_MORE_ERRORS]
            return
        self.setdefault(path, []).append(message)


# name: (path, max length, required, accepts integers): integers are common for ids (`"id": 42`).
# In this order (id, type, name) _party returns the values.
ACTOR_FIELDS = {
    "id": ("actor.id", 255, True, True),
    "type": ("actor.type", 64, False, False),
    "name": ("actor.name", 255, False, False),
}
TARGET_FIELDS = {
    "id": ("target.id", 255, False, True),
    "type": ("target.type", 64, False, False),
    "name": ("target.name", 255, False, False),
}
_TOP_FIELDS = frozenset(
    {"action", "actor", "target", "occurred_at", "outcome", "context", "metadata", "idempotency_key"}
)
_CONTEXT_FIELDS = frozenset({"ip", "user_agent"})
_OUTCOMES = frozenset(Outcome.values)  # Outcome.values builds a new list on every access


def _text(errors: _Errors, path: str, value: Any, limit: int, *, required=False, allow_int=False) -> str:
    # The common case first: a non-empty ASCII string within the limit and without NUL.
    if type(value) is str and 0 < len(value) <= limit and value.isascii() and "\x00" not in value:
        return value
    if value is None or value == "":
        if required:
            errors.add(path, MSG_REQUIRED if value is None else MSG_BLANK)
        return ""
    if allow_int and (type(value) is int or (type(value) is float and value.is_integer())):  # not bool
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            errors.add(path, MSG_INTEGER_RANGE)
            return ""
        value = str(int(value))
    if not isinstance(value, str):
        errors.add(path, MSG_NOT_STRING)
        return ""
    if len(value) > limit:
        errors.add(path, msg_too_long(limit))
    elif "\x00" in value:
        errors.add(path, MSG_NUL)
    elif not value.isascii() and not _encodable(value):
        errors.add(path, MSG_SURROGATE)
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _object(errors: _Errors, path: str, value: Any, allowed: frozenset | dict) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add(path, MSG_NOT_OBJECT)
        return {}
    if type(value) is DuplicateKeys:
        for name in value.names:
            errors.add(f"{path}.{name}" if path else name, MSG_DUPLICATE)
    if not value.keys() <= allowed:  # no set is built when every key is known
        for name in value.keys() - allowed:
            errors.add(f"{path}.{name}" if path else name, MSG_UNKNOWN)
    return value


def _party(errors: _Errors, path: str, value: Any, spec: dict, *, required: bool) -> list[str]:
    """Return [id, type, name]."""
    if value is None and required:
        errors.add(f"{path}.id", MSG_REQUIRED)
        return ["", "", ""]
    data = _object(errors, path, value, spec.keys())
    return [
        _text(errors, field_path, data.get(name), limit, required=req and required, allow_int=ints)
        for name, (field_path, limit, req, ints) in spec.items()
    ]


# The date-time grammar of RFC 3339 (section 5.6), "T" and "Z" in either case as it allows, with
# two limits: the year as written is 1970 or later, and seconds stop at 59 (a leap second has no
# representation here). Written for both Python and the OpenAPI document's ECMA-262 `pattern`:
# [0-9], never \d (Python's \d matches every Unicode digit).
DATETIME_RE = re.compile(
    r"(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(\.[0-9]+)?"
    r"([Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
# Past the end of the calendar once in UTC (9999-12-31T23:00:00-05:00): later than any time.
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def datetime_parse(value: Any) -> datetime | None:
    """An RFC 3339 date-time (DATETIME_RE, a real calendar date) as UTC, or None.

    The UTC offset is applied here, so the databases only ever see UTC: any offset RFC 3339
    allows works on both. A time that would fall after the year 9999 once in UTC is
    END_OF_TIME; one before the year 1 cannot be written (the year is 1970 or later).
    """
    match = DATETIME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone, sign, zone_hours, zone_minutes = match.groups()
    offset = timedelta()
    if zone not in ("Z", "z"):
        offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
        offset = -offset if sign == "-" else offset
    microsecond = int(fraction[1:7].ljust(6, "0")) if fraction else 0  # further digits dropped
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microsecond)
    except ValueError:  # 2026-02-30
        return None
    try:
        return (local - offset).replace(tzinfo=UTC)
    except OverflowError:
        return END_OF_TIME


def _occurred_at(errors: _Errors, value: Any, now: datetime) -> datetime | None:
    if value is None:
        return None
    parsed = datetime_parse(value)
    if parsed is None:
        errors.add("occurred_at", MSG_DATETIME)
        return None
    if parsed > now + MAX_FUTURE_SKEW:
        errors.add("occurred_at", MSG_FUTURE)
    return parsed


def _ip(errors: _Errors, value: Any) -> str | None:
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
        # A zone id (fe80::1%eth0) means something only on the producer's host, and PostgreSQL's
        # inet refuses it.
        address = ipaddress.ip_address(value if isinstance(value, str) and "%" not in value else "")
    except ValueError:
        errors.add("context.ip", MSG_IP)
        return None
    return str(address)


def _metadata(errors: _Errors, value: Any, duplicates: bool) -> tuple[dict, str]:
    """Return the metadata and its canonical JSON (sorted keys, compact): serialized once, then
    used for the size limit, the payload hash and storage. `duplicates`: the body repeated a key
    somewhere, so the walk looks for it here too."""
    if value is None:
        return {}, "{}"
    if not isinstance(value, dict):
        errors.add("metadata", MSG_NOT_OBJECT)
        return {}, "{}"
    try:
        serialized = metadata_canonical(value)
    except ValueError:  # NaN or an infinity (1e400): the event's own 400, not the database's 500
        errors.add("metadata", MSG_NUMBER_RANGE)
        return {}, "{}"
    try:
        size = len(serialized.encode("utf-8"))
    except UnicodeEncodeError:
        errors.add("metadata", MSG_SURROGATE)
        return {}, "{}"
    # Walk only where the text could hide a NUL (serialized as \u0000) or too deep a nesting.
    could_hide = (
        duplicates
        or NUL_ESCAPE in serialized
        or serialized.count("{") + serialized.count("[") > MAX_METADATA_DEPTH
    )
    if could_hide and (problem := _metadata_problem(value)):
        errors.add("metadata", problem)
        return {}, "{}"
    if size > MAX_METADATA_BYTES:
        errors.add("metadata", MSG_METADATA_SIZE)
    return value, serialized


def _metadata_problem(value: dict) -> str | None:
    """Walk without recursion: NUL (PostgreSQL's jsonb rejects it), lone surrogates, depth,
    repeated keys."""
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
            children, strings = (), (node,) if isinstance(node, str) else ()
        for text in strings:
            if "\x00" in text:
                return MSG_NUL
            if not text.isascii() and not _encodable(text):
                return MSG_SURROGATE
        stack.extend((child, depth + 1) for child in children)
    return None


def _idempotency_key(errors: _Errors, body_key: Any, header_key: str | None) -> str | None:
    key = body_key if body_key is not None else header_key
    if key is None:
        return None
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        errors.add("idempotency_key", MSG_KEY)
        return None
    if body_key is not None and header_key is not None and body_key != header_key:
        errors.add("idempotency_key", MSG_KEY_MISMATCH)
    return key


def event_validate(
    data: Any, *, header_key: str | None = None, now: datetime | None = None, duplicates: bool = False
) -> EventInput:
    """Return the clean event, or raise ValidationFailed with every problem found.

    `duplicates`: the JSON body repeated a key somewhere (see object_from_pairs).
    """
    if not isinstance(data, dict):
        raise ValidationFailed({}, MSG_EVENT_NOT_OBJECT)
    errors = _Errors()
    body = _object(errors, "", data, _TOP_FIELDS)
    now = now or timezone.now()

    action = _text(errors, "action", body.get("action"), MAX_ACTION, required=True)
    if action and "action" not in errors and not ACTION_RE.fullmatch(action):
        errors.add("action", MSG_ACTION)
    actor_id, actor_type, actor_name = _party(errors, "actor", body.get("actor"), ACTOR_FIELDS, required=True)
    target_id, target_type, target_name = _party(
        errors, "target", body.get("target"), TARGET_FIELDS, required=False
    )
    occurred_at = _occurred_at(errors, body.get("occurred_at"), now)
    outcome = body.get("outcome")
    if outcome is None:
        outcome = Outcome.SUCCESS.value
    elif not isinstance(outcome, str) or outcome not in _OUTCOMES:
        errors.add("outcome", MSG_OUTCOME)
    context = _object(errors, "context", body.get("context"), _CONTEXT_FIELDS)
    ip_address = _ip(errors, context.get("ip"))
    user_agent = _text(errors, "context.user_agent", context.get("user_agent"), MAX_USER_AGENT)
    metadata, metadata_json = _metadata(errors, body.get("metadata"), duplicates)
    key = _idempotency_key(errors, body.get("idempotency_key"), header_key)
    if errors:
        raise ValidationFailed(dict(errors))

    # EventInput's order, which begins with PAYLOAD_HASH_V1's fields in theirs (tests/test_formats.py).
    fields = [
        action,
        actor_id,
        actor_type,
        actor_name,
        target_type,
        target_id,
        target_name,
        occurred_at,
        outcome,
        ip_address,
        user_agent,
    ]
    return EventInput(*fields, metadata, metadata_json, key, PAYLOAD_HASH_V1.digest(fields, metadata_json))
