"""Events' leaves straight from the database's rows (sealing and auditlog_verify: every event).

The ORM's query for LEAF_COLUMNS runs on a plain cursor, without Django's per-value
converters; each value becomes the JSON value LEAF_V1 writes (datetimes and UUIDs as their
texts, metadata parsed), and Python's C encoder writes the leaf where that is provably RFC
8785's text (LEAF_V1.leaf_of_json_values). A third of the work of building model values and
writing them one by one; tests/test_leaf_rows.py holds the leaves to LEAF_V1.leaf's of the
ORM's values, on every kind of value.
"""

import json
import re
from collections.abc import Callable
from datetime import UTC
from uuid import UUID

from django.db import connection
from django.db.models import F, Func, TextField
from django.db.models.functions import Cast

from auditlog.events.formats import LEAF_V1
from auditlog.models import ActionLog
from auditlog.trail import jcs

# The leaf's fields as a query reads them: the source as its key's prefix.
LEAF_COLUMNS = tuple("source__prefix" if field == "source_id" else field for field in LEAF_V1.fields)
_HEX = "0123456789abcdef"
# 16 digits in a row: perhaps an integer beyond 2**53 (9007199254740992), which RFC 8785 refuses.
_LONG_DIGITS = re.compile(r"\d{16}")


class _NotPlain(Exception):
    """A float (or NaN, Infinity) in a JSON document: RFC 8785 writes it unlike Python."""


def _not_plain(token):
    raise _NotPlain


_PLAIN_DECODE = json.JSONDecoder(parse_float=_not_plain, parse_constant=_not_plain).decode


def _uuid(value):
    # SQLite stores 32 lowercase hex digits (Django's UUIDField without a native type).
    if type(value) is str and len(value) == 32 and not value.strip(_HEX):
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    if value is None:
        return None
    return str(value if isinstance(value, UUID) else UUID(value))  # what Django's UUIDField reads


def _datetime(value):
    # The drivers give UTC: naive from SQLite (Django stores UTC), aware UTC from psycopg.
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def _columns() -> tuple[list, dict[str, tuple[tuple[int, Callable], ...]]]:
    """What the query selects on each database, and (position, converter) of the values that
    are not JSON values as each database's driver gives them. PostgreSQL writes the UUIDs and
    datetimes' texts itself (in C, in its own process); SQLite's are converted here."""
    kinds = {"UUIDField": _uuid, "DateTimeField": _datetime}
    fields = {field.name: field.get_internal_type() for field in ActionLog._meta.concrete_fields}
    special = [(position, name) for position, name in enumerate(LEAF_COLUMNS) if fields.get(name) in kinds]
    postgresql = list(LEAF_COLUMNS)
    for position, name in special:
        postgresql[position] = (
            Cast(name, TextField())
            if fields[name] == "UUIDField"
            else Func(F(name), template=f"to_char(%(expressions)s AT TIME ZONE 'UTC', '{_PG_DATETIME}')")
        )
    converters = tuple((position, kinds[fields[name]]) for position, name in special)
    return postgresql, {"postgresql": (), "sqlite": converters}


# to_char's form of isoformat(timespec="microseconds") + "Z": 0001 to 9999, six digits always.
_PG_DATETIME = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_PG_COLUMNS, _CONVERTERS = _columns()
_METADATA = LEAF_COLUMNS.index("metadata")


def events_leaf_values(after_id: int, upto_id: int, limit: int | None = None) -> list[tuple[int, list]]:
    """(id, its LEAF_V1 values as JSON values) of the events with after_id < id <= upto_id, in
    id order, at most `limit`; leaf() makes each one's leaf."""
    columns = _PG_COLUMNS if connection.vendor == "postgresql" else LEAF_COLUMNS
    query = (
        ActionLog.objects.filter(id__gt=after_id, id__lte=upto_id).order_by("id").values_list("id", *columns)
    )
    if limit is not None:
        query = query[:limit]
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converters = _CONVERTERS[connection.vendor]
    result = []
    for row in rows:
        values = list(row[1:])
        for position, convert in converters:
            values[position] = convert(values[position])
        result.append((row[0], values))
    return result


def leaf(leaf_index: int, values: list) -> bytes:
    """The leaf of an event's values from events_leaf_values (its metadata as stored: JSON text
    from both databases, which Django's converter would parse)."""
    document = values[_METADATA]
    if type(document) is not str:
        return LEAF_V1.leaf(leaf_index, values)
    values = list(values)  # the caller's stay as they are
    try:
        if _LONG_DIGITS.search(document):
            raise _NotPlain
        values[_METADATA] = _PLAIN_DECODE(document)
    except _NotPlain:
        values[_METADATA] = json.loads(document)
        return jcs.canonical(LEAF_V1.obj(leaf_index, values))
    return LEAF_V1.leaf_of_json_values(leaf_index, values)
