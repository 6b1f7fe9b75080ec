"""Streaming exports: CSV and JSON Lines, one line at a time, for the admin and the command."""

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from auditlog.events.definition import EVENT_FIELDS
from auditlog.models import ActionLog, ApiKey
from auditlog.reading.serialization import event_as_dict

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}
# A spreadsheet runs a cell as a formula (OWASP "CSV injection") when it starts, past any spaces
# and quotes, with = + - @, or when it starts with a tab or carriage return.
LEADING_FORMULA = re.compile(r'[\t\r]|[\s"]*[=+\-@]')
# Every cell is quoted, so a comma inside one never splits it. A spreadsheet that splits on `;`
# or tab (the list separator of many locales) ignores the quotes, though: it starts a cell after
# any `;`, tab or line break inside a value. A formula character there gets a `'` too (in
# metadata, JSON's own escape, so that it stays the same JSON).
SEPARATED_FORMULA = re.compile(r'([;\t\r\n][\s"]*)([=+\-@])')


def csv_cell(value) -> str:
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    text = SEPARATED_FORMULA.sub(r"\1'\2", text)
    return f"'{text}" if LEADING_FORMULA.match(text) else text


def csv_json_cell(value) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return csv_cell(SEPARATED_FORMULA.sub(lambda match: f"{match[1]}\\u{ord(match[2]):04x}", text))


class _Line:
    """A file-like object whose write() returns the line, so csv.writer can feed a generator."""

    def write(self, line: str) -> str:
        return line


def _source_cell(key: ApiKey) -> str:
    """The source's name and its key's prefix: names are chosen freely, prefixes are unique."""
    return csv_cell(f"{key.name} ({key.prefix})")


# Values of these types as a CSV cell has them; others as csv_cell writes them.
_CELL_BY_TYPE: dict[type, Callable[[Any], str]] = {dict: csv_json_cell, ApiKey: _source_cell}
_CSV_FIELDS = [field for field in EVENT_FIELDS if field.csv]
CSV_COLUMNS = tuple(field.csv for field in _CSV_FIELDS)
_CSV_READ = attrgetter(*(field.attribute for field in _CSV_FIELDS))
_CSV_CELLS = tuple(_CELL_BY_TYPE.get(field.type, csv_cell) for field in _CSV_FIELDS)


def events_csv_lines(events: Iterable[ActionLog]) -> Iterator[str]:
    writer = csv.writer(_Line(), quoting=csv.QUOTE_ALL)
    yield writer.writerow(CSV_COLUMNS)
    for event in events:
        yield writer.writerow([cell(value) for cell, value in zip(_CSV_CELLS, _CSV_READ(event), strict=True)])


def events_jsonl_lines(events: Iterable[ActionLog]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event_as_dict(event), cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


def events_export_lines(events: Iterable[ActionLog], export_format: str) -> Iterator[str]:
    return events_csv_lines(events) if export_format == "csv" else events_jsonl_lines(events)
