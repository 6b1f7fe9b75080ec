"""The public JSON form of an event: the API's responses and the exports use it."""

from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

from django.core.serializers.json import DjangoJSONEncoder

from auditlog.events.definition import EVENT_FIELDS, EventField, json_form
from auditlog.models import ActionLog, ApiKey

_ENCODER = DjangoJSONEncoder()


def json_timestamp(value: datetime) -> str:
    """A datetime as the API writes it everywhere (DjangoJSONEncoder: milliseconds, `Z`)."""
    return _ENCODER.default(value)


def _source_as_dict(key: ApiKey) -> dict:
    return {"name": key.name, "prefix": key.prefix}


# Values of these types as the JSON form writes them; others as they are (the encoder writes datetimes).
_AS_JSON: dict[type, Callable[[Any], Any]] = {UUID: str, ApiKey: _source_as_dict}


def _reader(name: str, member: EventField | dict[str, EventField]) -> Callable[[ActionLog], Any]:
    """What reads one member of the JSON form from an event."""
    if isinstance(member, EventField):
        read = attrgetter(member.attribute)
        write = _AS_JSON.get(member.type)
        return read if write is None else lambda event: write(read(event))
    if any(field.type in _AS_JSON for field in member.values()):
        raise ValueError(f"{name}: the values in an object are written as they are")
    keys = tuple(member)
    read = attrgetter(*(field.attribute for field in member.values()))
    if len(keys) == 1:
        return lambda event: {keys[0]: read(event)}
    return lambda event: dict(zip(keys, read(event), strict=True))


_MEMBERS = tuple(
    (name, _reader(name, member))
    for name, member in json_form(field for field in EVENT_FIELDS if field.json).items()
)


def event_as_dict(event: ActionLog) -> dict:
    form = {}
    for name, read in _MEMBERS:
        form[name] = read(event)
    return form
