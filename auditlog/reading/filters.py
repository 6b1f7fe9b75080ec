"""Turn query parameters into clean event filters or field errors (same messages as events)."""

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from auditlog.events.datetimes import MSG_DATETIME, datetime_parse
from auditlog.events.definition import FIELDS
from auditlog.events.rules import ACTION_CHARS, MSG_BLANK, MSG_NUL, MSG_OUTCOME, msg_too_long
from auditlog.events.validation import MSG_UNKNOWN, ValidationFailed
from auditlog.models import Outcome
from auditlog.reading.keyset import CursorOfAnotherList, InvalidCursor, cursor_decode

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MSG_LIMIT = f"Must be an integer from 1 to {MAX_LIMIT}."
MSG_CURSOR = "Not a cursor this service issued; pass next_cursor back unchanged."
MSG_CURSOR_FILTERS = "This cursor belongs to a list with other filters; start again without a cursor."
MSG_ACTION_FILTER = "Use an exact action (invoice.delete) or a prefix ending in .* (invoice.*)."
MSG_INVALID_FILTERS = "Invalid query parameters; see fields."
MSG_REPEATED = "Give this parameter once."

# An exact action, or a prefix ending in ".*": "invoice.*" is every action that starts "invoice.".
ACTION_FILTER_RE = re.compile(rf"{ACTION_CHARS}+|{ACTION_CHARS}*\.\*")
# The filters on a text field, each with its field's length.
TEXT_FILTERS = {
    name: FIELDS[name].rule.max_length for name in ("actor_id", "actor_type", "target_type", "target_id")
}
MAX_ACTION = FIELDS["action"].rule.max_length


@dataclass(frozen=True, slots=True)
class EventFilters:
    actor_id: str | None = None
    actor_type: str | None = None
    action: str | None = None
    action_prefix: str | None = None  # "invoice." for action=invoice.*
    target_type: str | None = None
    target_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[datetime, int] | None = None  # the cursor's position
    source_id: int | None = None  # a key with the read scope reads its own source's events only
    scope: str = ""  # the filters above but limit and after, as cursors are bound to them


# The filters a cursor is bound to: the page size may change between pages, the list may not.
_SCOPED = (
    "actor_id",
    "actor_type",
    "action",
    "action_prefix",
    "target_type",
    "target_id",
    "outcome",
    "since",
    "until",
)


def _scope(values: dict) -> str:
    named = [f"{name}={values[name]!r}" for name in _SCOPED if values.get(name) is not None]
    return hashlib.sha256("&".join(named).encode()).hexdigest()[:16] if named else ""


def _datetime(value: str) -> datetime | None:
    return datetime_parse(value.replace(" ", "+"))  # a raw "+" in a URL reads as a space


def event_filters_parse(params) -> EventFilters:
    """Parse a QueryDict; raise ValidationFailed naming every bad parameter."""
    errors: dict[str, list[str]] = {}
    values: dict = {}
    allowed = set(TEXT_FILTERS) | {"action", "outcome", "since", "until", "limit", "cursor"}
    for name in params:
        if name not in allowed:
            errors[name] = [MSG_UNKNOWN]
        elif len(params.getlist(name)) > 1:
            errors[name] = [MSG_REPEATED]
    get = params.get

    for name, limit in TEXT_FILTERS.items():
        if get(name) is not None:
            values[name] = get(name)
            if not values[name]:  # `?actor_id=` is a mistake, not a filter on the empty id
                errors[name] = [MSG_BLANK]
            elif len(values[name]) > limit:
                errors[name] = [msg_too_long(limit)]
            elif "\x00" in values[name]:  # PostgreSQL refuses NUL in text
                errors[name] = [MSG_NUL]
    if (action := get("action")) is not None:
        prefix = action[:-1] if action.endswith(".*") else None
        if not ACTION_FILTER_RE.fullmatch(action) or len(action) > MAX_ACTION:
            errors["action"] = [MSG_ACTION_FILTER]
        values["action_prefix" if prefix else "action"] = prefix or action
    if (outcome := get("outcome")) is not None:
        if outcome not in Outcome.values:
            errors["outcome"] = [MSG_OUTCOME]
        values["outcome"] = outcome
    for name in ("since", "until"):
        if get(name) is not None:
            values[name] = _datetime(get(name))
            if values[name] is None:
                errors[name] = [MSG_DATETIME]
    if (limit := get("limit")) is not None:
        values["limit"] = int(limit) if limit.isascii() and limit.isdigit() else 0  # not "³"
        if not 1 <= values["limit"] <= MAX_LIMIT:
            errors["limit"] = [MSG_LIMIT]
    values["scope"] = _scope(values)
    if (cursor := get("cursor")) is not None:
        try:
            values["after"] = cursor_decode(cursor, values["scope"])
        except CursorOfAnotherList:
            errors["cursor"] = [MSG_CURSOR_FILTERS]
        except InvalidCursor:
            errors["cursor"] = [MSG_CURSOR]
    if errors:
        raise ValidationFailed(errors, MSG_INVALID_FILTERS)
    return EventFilters(**values)
