"""The event's definition (auditlog.events.definition) is the one list of its fields: the model
has the same columns, and every place that stores, writes out or documents an event follows it.
(Its place in the stored formats: tests/test_formats.py.)"""

import csv
import io
import json
from datetime import UTC, datetime
from operator import itemgetter
from uuid import UUID

import pytest

from auditlog.events.definition import EVENT_FIELDS, FIELDS, Origin
from auditlog.events.formats import metadata_canonical
from auditlog.events.rules import Choice, Text
from auditlog.events.validation import EventInput, event_validate
from auditlog.http.openapi import openapi_document
from auditlog.ingest.demo import demo_rows
from auditlog.ingest.services import events_create_batch
from auditlog.ingest.storage import COLUMNS, EventRows, rows_prepare
from auditlog.models import ActionLog, ApiKey
from auditlog.reading.export import events_csv_lines
from auditlog.reading.serialization import event_as_dict
from tests.conftest import make_event

NOW = datetime(2026, 2, 1, tzinfo=UTC)
PRODUCERS = [field for field in EVENT_FIELDS if field.origin is Origin.PRODUCER]
# Every value distinct and plain (no formula character for the CSV to escape).
BODY = make_event(
    actor={"id": "42", "type": "user", "name": "Ada"},
    target={"id": "7", "type": "invoice", "name": "INV-7"},
    occurred_at="2026-01-31T12:00:00.250001Z",
    outcome="failure",
    context={"ip": "2001:db8::1", "user_agent": "billing/1.0"},
    metadata={"reason": "duplicate", "amount": [1, 2]},
    idempotency_key="key-1",
)


@pytest.fixture
def stored(writer_key) -> ActionLog:
    """BODY, validated and stored as the API stores a batch, read back."""
    [outcome] = events_create_batch(source=writer_key[0], events=[event_validate(BODY, now=NOW)])
    return ActionLog.objects.select_related("source").get(uuid=outcome.event.uuid)


def test_the_definition_has_each_column_of_the_model_once():
    model = [field.attname for field in ActionLog._meta.concrete_fields]

    assert sorted(field.column for field in EVENT_FIELDS) == sorted(model)
    assert len(FIELDS) == len(EVENT_FIELDS)


@pytest.mark.parametrize(
    "field", [f for f in PRODUCERS if isinstance(f.rule, Text)], ids=lambda field: field.column
)
def test_a_text_rule_takes_text_as_long_as_its_column_stores(field):
    assert field.rule.max_length == ActionLog._meta.get_field(field.column).max_length


@pytest.mark.parametrize(
    "field", [f for f in PRODUCERS if isinstance(f.rule, Choice)], ids=lambda field: field.column
)
def test_a_choice_rule_takes_the_choices_its_column_allows(field):
    choices = [value for value, _ in ActionLog._meta.get_field(field.column).choices]

    assert list(field.rule.choices) == choices
    assert field.rule.default == ActionLog._meta.get_field(field.column).default


def test_the_insert_names_every_column_the_database_does_not_assign_once():
    assert sorted(COLUMNS) == sorted(f.column for f in EVENT_FIELDS if f.origin is not Origin.DATABASE)


def test_a_row_begins_with_its_uuid():
    # auditlog.ingest.group_commit reads a row's uuid at row[0].
    assert COLUMNS[0] == "uuid"


@pytest.mark.django_db
def test_a_stored_event_holds_each_validated_value_in_its_column(stored):
    event = event_validate(BODY, now=NOW)

    for name in EventInput._fields:
        if name in FIELDS:
            assert getattr(stored, name) == getattr(event, name), name


def test_demo_rows_and_the_api_s_rows_are_adapted_alike():
    event = event_validate(BODY, now=NOW)
    event_uuid = UUID("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b")
    row = EventRows(received_at=NOW, source_id=3).row(event, event_uuid)
    values = {name: getattr(event, name) for name in EventInput._fields if name in FIELDS}

    generated = {
        **values,
        "metadata": event.metadata_json,
        "uuid": event_uuid,
        "received_at": NOW,
        "source_id": 3,
    }

    assert rows_prepare([itemgetter(*COLUMNS)(generated)]) == [row]


def test_demo_rows_hold_metadata_as_the_api_stores_it():
    metadata = [row[COLUMNS.index("metadata")] for row in demo_rows(50, 3, seed=3)]

    assert metadata == [metadata_canonical(json.loads(text)) for text in metadata]


def _as_json(value):
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, ApiKey):
        return {"name": value.name, "prefix": value.prefix}
    return value


@pytest.mark.django_db
def test_the_json_form_carries_each_field_where_the_definition_says_and_nothing_else(stored):
    expected: dict = {}
    for field in EVENT_FIELDS:
        if field.json:
            *objects, name = field.json
            node = expected
            for parent in objects:
                node = node.setdefault(parent, {})
            node[name] = _as_json(getattr(stored, field.attribute))

    assert event_as_dict(stored) == expected


def test_the_csv_header_is_the_definition_s_titles_in_its_order():
    header = next(csv.reader(io.StringIO(next(events_csv_lines([])))))

    assert header == [field.csv for field in EVENT_FIELDS if field.csv]


def _as_cell(value) -> str:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, ApiKey):
        return f"{value.name} ({value.prefix})"  # a name is chosen freely, a prefix is unique
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else str(value)


@pytest.mark.django_db
def test_a_csv_row_has_each_field_under_its_title(stored):
    row = next(csv.DictReader(io.StringIO("".join(events_csv_lines([stored])))))

    assert row == {
        field.csv: _as_cell(getattr(stored, field.attribute)) for field in EVENT_FIELDS if field.csv
    }


def _properties(schema: dict) -> dict:
    """An object schema's properties, the object possibly nullable (anyOf [object, null])."""
    objects = [option for option in schema.get("anyOf", [schema]) if option.get("type") == "object"]
    return objects[0].get("properties", {}) if objects else {}


def _members(fields) -> dict[str, set]:
    members: dict[str, set] = {}
    for field in fields:
        name, *member = field.json
        members.setdefault(name, set()).update(member)
    return members


def test_the_documented_request_has_the_producer_s_fields_where_the_request_carries_them():
    properties = openapi_document()["components"]["schemas"]["Event"]["properties"]

    assert {name: set(_properties(schema)) for name, schema in properties.items()} == _members(PRODUCERS)


def test_the_documented_response_has_every_field_the_json_form_carries_where_it_does():
    properties = openapi_document()["components"]["schemas"]["EventOut"]["properties"]
    carried = _members(field for field in EVENT_FIELDS if field.json)
    carried["source"] = {"name", "prefix"}  # the source's JSON form: its key's name and prefix

    assert {name: set(_properties(schema)) for name, schema in properties.items()} == carried
