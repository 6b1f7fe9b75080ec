"""The one definition of an event's fields: where each is stored, carried, exported and checked.

Every list of the event's fields derives from EVENT_FIELDS: the insert's columns and rows
(auditlog.ingest.storage), the validated event and the checks of a request
(auditlog.events.validation), the JSON form (auditlog.reading.serialization), the CSV and JSON
Lines exports, the OpenAPI document, this service's own events and the demo rows.

The stored formats are the exception, on purpose: PAYLOAD_HASH_V1 and LEAF_V1
(auditlog.events.formats) name their fields themselves, so that a new field changes neither
until a new version of it says so. tests/test_formats.py makes that a decision: every field
here is in each format or in the format's list of fields left out.

To add a field: an entry below, the model field and its migration, and its place in the formats.
A field the server assigns needs code too (EventRows.row fills it in); a producer's field needs
only its rule.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from types import UnionType
from uuid import UUID

from auditlog.events.datetimes import DateTime
from auditlog.events.metadata import Metadata
from auditlog.events.rules import (
    ACTION_RE,
    MSG_ACTION,
    MSG_OUTCOME,
    Choice,
    IdempotencyKey,
    IpAddress,
    Rule,
    Text,
)
from auditlog.models import ActionLog, ApiKey, Outcome


class Origin(Enum):
    PRODUCER = "given by the producer, checked by the field's rule"
    SERVER = "assigned by the server"
    DATABASE = "assigned by the database on insert"


@dataclass(frozen=True, slots=True)
class EventField:
    column: str  # ActionLog's column (the model field's attname)
    type: type | UnionType  # of its value; for a relation, the related model
    origin: Origin
    json: tuple[str, ...] = ()  # where the API's JSON form carries it: ("actor", "id"); () if not
    csv: str | None = None  # its column's title in CSV exports; None if they leave it out
    rule: Rule | None = None  # what the producer may give: for the producer's fields, and only them

    def __post_init__(self):
        if (self.rule is None) == (self.origin is Origin.PRODUCER):
            raise ValueError(f"{self.column}: a field has a rule if and only if the producer gives it")
        if len(self.json) > 2:
            raise ValueError(f"{self.column}: the JSON form nests objects one level deep, no more")

    @property
    def attribute(self) -> str:
        """The model attribute that reads it: for a relation, the related object."""
        return ActionLog._meta.get_field(self.column).name


# In the order an event is written out: the CSV's columns, the JSON form's members.
EVENT_FIELDS = (
    EventField("id", int, Origin.DATABASE),
    EventField("uuid", UUID, Origin.SERVER, json=("id",), csv="id"),
    EventField(
        "occurred_at",
        datetime,
        Origin.PRODUCER,
        json=("occurred_at",),
        csv="occurred_at",
        rule=DateTime(if_absent="when the server received the event"),
    ),
    EventField("received_at", datetime, Origin.SERVER, json=("received_at",), csv="received_at"),
    EventField(
        "action",
        str,
        Origin.PRODUCER,
        json=("action",),
        csv="action",
        rule=Text(
            100, required=True, pattern=ACTION_RE, pattern_message=MSG_ACTION, example="invoice.delete"
        ),
    ),
    EventField(
        "actor_id",
        str,
        Origin.PRODUCER,
        json=("actor", "id"),
        csv="actor_id",
        rule=Text(255, required=True, integers=True),
    ),
    EventField("actor_type", str, Origin.PRODUCER, json=("actor", "type"), csv="actor_type", rule=Text(64)),
    EventField("actor_name", str, Origin.PRODUCER, json=("actor", "name"), csv="actor_name", rule=Text(255)),
    EventField(
        "target_type", str, Origin.PRODUCER, json=("target", "type"), csv="target_type", rule=Text(64)
    ),
    EventField(
        "target_id",
        str,
        Origin.PRODUCER,
        json=("target", "id"),
        csv="target_id",
        rule=Text(255, integers=True),
    ),
    EventField(
        "target_name", str, Origin.PRODUCER, json=("target", "name"), csv="target_name", rule=Text(255)
    ),
    EventField(
        "outcome",
        str,
        Origin.PRODUCER,
        json=("outcome",),
        csv="outcome",
        rule=Choice(tuple(Outcome.values), default=Outcome.SUCCESS.value, message=MSG_OUTCOME),
    ),
    EventField(
        "ip_address", str | None, Origin.PRODUCER, json=("context", "ip"), csv="ip_address", rule=IpAddress()
    ),
    EventField(
        "user_agent",
        str,
        Origin.PRODUCER,
        json=("context", "user_agent"),
        csv="user_agent",
        rule=Text(512),
    ),
    EventField("metadata", dict, Origin.PRODUCER, json=("metadata",), csv="metadata", rule=Metadata()),
    EventField(
        "idempotency_key",
        str | None,
        Origin.PRODUCER,
        json=("idempotency_key",),
        csv="idempotency_key",
        rule=IdempotencyKey(),
    ),
    EventField("source_id", ApiKey, Origin.SERVER, json=("source",), csv="source"),
    EventField("payload_hash", str, Origin.SERVER),  # PAYLOAD_HASH_V1, computed by validation
)
FIELDS = {field.column: field for field in EVENT_FIELDS}


def json_form(fields: Iterable[EventField]) -> dict[str, EventField | dict[str, EventField]]:
    """The JSON form that carries `fields`: its members, in the order of `fields`, each a field
    or an object of fields by member name. An object's `id` comes first, as the API has always
    written it (the CSV keeps the table's order: target_type before target_id)."""
    form: dict = {}
    for field in fields:
        name, *member = field.json
        if member:
            form.setdefault(name, {})[member[0]] = field
        else:
            form[name] = field
    for name, member in form.items():
        if isinstance(member, dict) and "id" in member:
            form[name] = {"id": member.pop("id"), **member}
    return form
