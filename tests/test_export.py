"""CSV exports are safe to open in a spreadsheet, whichever separator it splits on."""

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope

pytestmark = pytest.mark.django_db

ACTION = "test.csv"
FORMULA_CHARACTERS = ("=", "+", "-", "@")
# What each hostile value reads as once exported: a `'` before every place a spreadsheet could
# start a cell with a formula. Metadata keeps its exact JSON (escaped, not quoted).
HOSTILE = {
    "actor_id": ("=1+1", "'=1+1"),
    "actor_name": ('x;=HYPERLINK("http://evil")', 'x;\'=HYPERLINK("http://evil")'),
    "target_id": ("-2", "'-2"),
    "target_name": ("a\t=1+1", "a\t'=1+1"),
    "user_agent": ('curl/8; "@SUM(1)', "curl/8; \"'@SUM(1)"),
    "actor_type": (",@SUM(1)", ",@SUM(1)"),  # a comma is inside a quoted cell: nothing starts there
    "target_type": (" +cmd", "' +cmd"),
}
HOSTILE_METADATA = {
    "note": ",@SUM(1)",
    "dde": "ok;-2+3+cmd|' /C calc'!A0",
    "lines": "first\n=2+5\r\n@A1",
    "numbers": [1, -2],
}


def event_create(source, occurred_at, **fields):
    return ActionLog.objects.create(
        source=source,
        occurred_at=occurred_at,
        received_at=occurred_at,
        payload_hash="0" * 64,
        **fields,
    )


@pytest.fixture
def source():
    return api_key_create(name="spreadsheet-test", scopes={Scope.WRITE})[0]


@pytest.fixture
def hostile_event(source):
    values = {name: value for name, (value, _) in HOSTILE.items()}
    occurred_at = datetime(2026, 3, 1, tzinfo=UTC)
    return event_create(source, occurred_at, action=ACTION, metadata=HOSTILE_METADATA, **values)


def admin_export(admin_client) -> str:
    response = admin_client.get("/admin/auditlog/actionlog/export/csv/", {"action": ACTION})
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


def command_export(_admin_client) -> str:
    out = io.StringIO()
    call_command("auditlog_export", "--format", "csv", "--action", ACTION, stdout=out, stderr=io.StringIO())
    return out.getvalue()


EXPORTS = pytest.mark.parametrize("export", [admin_export, command_export], ids=["admin", "command"])


def cells(text: str, delimiter: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) for cell in row]


def formula_cells(text: str) -> dict[str, list[str]]:
    """The cells that a spreadsheet splitting on each separator could run as a formula (spaces
    and quotes before the formula character included: some import dialogs trim them)."""
    return {
        delimiter: [
            cell for cell in cells(text, delimiter) if cell.lstrip(' \t\r\n"').startswith(FORMULA_CHARACTERS)
        ]
        for delimiter in (",", ";", "\t")
    }


@EXPORTS
def test_no_cell_starts_a_formula_whatever_the_separator(admin_client, hostile_event, export):
    assert formula_cells(export(admin_client)) == {",": [], ";": [], "\t": []}


@EXPORTS
def test_read_with_commas_the_cells_are_the_values_with_a_quote_before_formulas(
    admin_client, hostile_event, export
):
    rows = list(csv.DictReader(io.StringIO(export(admin_client), newline="")))

    assert len(rows) == 1
    assert {name: rows[0][name] for name in HOSTILE} == {name: shown for name, (_, shown) in HOSTILE.items()}
    assert json.loads(rows[0]["metadata"]) == HOSTILE_METADATA
    assert rows[0]["id"] == str(hostile_event.uuid)


def test_every_cell_is_quoted(admin_client, hostile_event):
    header, row = admin_export(admin_client).splitlines()[:2]

    assert header.startswith('"id","occurred_at",')
    assert row.startswith(f'"{hostile_event.uuid}","2026-03-01T00:00:00+00:00",')


def test_admin_and_command_export_the_same_csv(admin_client, hostile_event):
    assert admin_export(admin_client) == command_export(admin_client)


def test_random_values_never_start_a_formula_whatever_the_separator(admin_client, source):
    """Values drawn from the characters that matter, stored and exported for real."""
    rng = random.Random(10)
    alphabet = ";\t\r\n\", =+-@a'|\\"

    def text():
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))

    start = datetime(2026, 1, 1, tzinfo=UTC)
    metadata = [{"k": text(), text(): [text(), -1]} for _ in range(300)]
    for n, meta in enumerate(metadata):
        event_create(
            source,
            start + timedelta(seconds=n),
            action=ACTION,
            actor_id=text(),
            actor_name=text(),
            target_name=text(),
            user_agent=text(),
            metadata=meta,
        )

    exported = command_export(admin_client)

    assert formula_cells(exported) == {",": [], ";": [], "\t": []}
    rows = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert [json.loads(row["metadata"]) for row in rows] == metadata[::-1]
