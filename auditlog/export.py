"""Streaming exports: CSV and JSON Lines, one line at a time, for the admin and the command."""

import csv
import json
from collections.abc import Iterable, Iterator

from django.core.serializers.json import DjangoJSONEncoder

from auditlog.models import ActionLog
from auditlog.serialization import event_as_dict

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
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class _Line:
    """A file-like object whose write() returns the line, so csv.writer can feed a generator."""

    def write(self, line: str) -> str:
        return line


def events_csv_lines(events: Iterable[ActionLog]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_COLUMNS)
    for event in events:
        metadata = json.dumps(event.metadata, ensure_ascii=False, separators=(",", ":"))
        yield writer.writerow(
            [
                csv_cell(value)
                for value in (
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
                    metadata,
                    event.idempotency_key,
                    event.source.name,
                )
            ]
        )


def events_jsonl_lines(events: Iterable[ActionLog]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event_as_dict(event), cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


def events_export_lines(events: Iterable[ActionLog], export_format: str) -> Iterator[str]:
    return events_csv_lines(events) if export_format == "csv" else events_jsonl_lines(events)
