"""Streaming exports: CSV and JSON Lines, one line at a time, for the admin and the command."""

import csv
import json
import re
from collections.abc import Iterable, Iterator

from django.core.serializers.json import DjangoJSONEncoder

from auditlog.models import ActionLog
from auditlog.reading.serialization import event_as_dict

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}
CSV_COLUMNS = (
    "id",
    "occurred_at",
    "received_at",
    "action",
    "actor_id",
    "actor_type",
    "actor_name",
    "target_type",
    "target_id",
    "target_name",
    "outcome",
    "ip_address",
    "user_agent",
    "metadata",
    "idempotency_key",
    "source",
)
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


def events_csv_lines(events: Iterable[ActionLog]) -> Iterator[str]:
    writer = csv.writer(_Line(), quoting=csv.QUOTE_ALL)
    yield writer.writerow(CSV_COLUMNS)
    for event in events:
        texts = (
            event.uuid,
            event.occurred_at,
            event.received_at,
            event.action,
            event.actor_id,
            event.actor_type,
            event.actor_name,
            event.target_type,
            event.target_id,
            event.target_name,
            event.outcome,
            event.ip_address,
            event.user_agent,
        )
        yield writer.writerow(
            [
                *(csv_cell(value) for value in texts),
                csv_json_cell(event.metadata),
                csv_cell(event.idempotency_key),
                csv_cell(event.source.name),
            ]
        )


def events_jsonl_lines(events: Iterable[ActionLog]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event_as_dict(event), cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


def events_export_lines(events: Iterable[ActionLog], export_format: str) -> Iterator[str]:
    return events_csv_lines(events) if export_format == "csv" else events_jsonl_lines(events)
