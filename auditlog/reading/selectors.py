"""Reads. Every query here uses an index (see docs/performance.md "Indexes")."""

import heapq
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from django.db import connection, connections, router
from django.db.models import QuerySet
from django.utils import timezone as django_timezone

from auditlog.db.replica import replica_fallback
from auditlog.events.datetimes import MAX_FUTURE_SKEW
from auditlog.models import ActionLog, ApiKey, EventKey
from auditlog.reading.filters import EventFilters

TARGET_PREFIX = "target:"
# Above this many actions under one prefix, one sorted query is cheaper than merging pages.
MAX_MERGED_ACTIONS = 20


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """The event an idempotency key stored: what a replay answers, and the body's hash that
    tells a replay from a conflict."""

    uuid: uuid.UUID
    received_at: datetime
    payload_hash: str


def events_get_by_idempotency_keys(*, source: ApiKey, keys) -> dict[str, KeyHolder]:
    """The events of a source with these idempotency keys, from EventKey.

    The keys travel as one parameter, an array on PostgreSQL and a JSON array on SQLite: the
    ORM's IN list cost a batch 4 ms to build for 1,000 keys. Both plans search EventKey's
    primary key (source, idempotency_key) once per key (tests/test_query_plans.py).
    """
    sql, params = idempotency_lookup_query(source.pk, keys)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if connection.vendor == "sqlite":  # text as stored: Django's converters, as the ORM applies them
        ops = connection.ops
        rows = [
            (
                key,
                ops.convert_uuidfield_value(event_uuid, None, connection),
                ops.convert_datetimefield_value(received_at, None, connection),
                payload_hash,
            )
            for key, event_uuid, received_at, payload_hash in rows
        ]
    return {key: KeyHolder(*values) for key, *values in rows}


def idempotency_lookup_query(source_id: int, keys) -> tuple[str, list]:
    table, columns = EventKey._meta.db_table, "idempotency_key, event_uuid, received_at, payload_hash"
    if connection.vendor == "postgresql":
        # One index search per key, whatever the planner thinks of the table's size: a plain
        # `= ANY(keys)` was planned as a table scan (44,000 rows, 1,000 keys) or as a filter
        # over all of the source's rows. LIMIT keeps the subquery from being flattened.
        sql = (
            f"SELECT {columns} FROM unnest(%s::text[]) AS wanted(key) CROSS JOIN LATERAL "
            f"(SELECT {columns} FROM {table} WHERE source_id = %s AND idempotency_key = wanted.key "
            "LIMIT 1) AS found"
        )
        return sql, [list(keys), source_id]
    sql = (
        f"SELECT {columns} FROM {table} "
        "WHERE source_id = %s AND idempotency_key IN (SELECT value FROM json_each(%s))"
    )
    return sql, [source_id, json.dumps(list(keys))]


SUMMARY_COUNT_BOUND = 10_000  # counted up to this, then "more than": the index stays cheap at any size


@dataclass(frozen=True, slots=True)
class SourceSummary:
    source: ApiKey
    events_today: int  # at most SUMMARY_COUNT_BOUND + 1
    failures_today: int  # likewise
    newest: datetime | None  # the newest event's occurred_at


def source_today(source: ApiKey, midnight: datetime) -> QuerySet[ActionLog]:
    return occurred_since(ActionLog.objects.filter(source=source), midnight)


def sources_summary(now: datetime | None = None) -> list[SourceSummary]:
    """Per source that has a usable key or is the service's own: its events and failures since
    midnight UTC (occurred_at, counted up to a bound) and its newest event, each from the
    (source, occurred_at, id) index or the failures' partial index; midnight also bounds
    received_at, so on PostgreSQL only the current partitions are read."""
    now = now or django_timezone.now()
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for source in ApiKey.objects.order_by("name"):
        if source.revoked_at is not None and source.scopes:
            continue  # a revoked producer's key; the internal source is revoked from birth
        today = source_today(source, midnight)
        newest = (
            ActionLog.objects.filter(source=source)
            .order_by("-occurred_at", "-id")
            .values_list("occurred_at", flat=True)
            .first()
        )
        rows.append(
            SourceSummary(
                source,
                today[: SUMMARY_COUNT_BOUND + 1].count(),
                today.filter(outcome="failure")[: SUMMARY_COUNT_BOUND + 1].count(),
                newest,
            )
        )
    return rows


def event_of_source(event_id, source: ApiKey) -> bool:
    return ActionLog.objects.filter(uuid=event_id, source=source).exists()


def event_get(event_id) -> ActionLog | None:
    return ActionLog.objects.select_related("source").filter(uuid=event_id).first()


def event_queryset(filters: EventFilters) -> QuerySet[ActionLog]:
    """The events that match the filters (every filter combination has an index to start from)."""
    queryset = ActionLog.objects.select_related("source").filter(**_equalities(filters))
    if filters.action_prefix is not None:
        # A byte-wise range, not LIKE: it uses the action index (the column is C-collated on
        # PostgreSQL).
        queryset = queryset.filter(
            action__gte=filters.action_prefix, action__lt=_after_prefix(filters.action_prefix)
        )
    if filters.since is not None:
        queryset = occurred_since(queryset, filters.since)
    if filters.until is not None:
        queryset = queryset.filter(occurred_at__lt=filters.until)
    return queryset


def occurred_since(queryset: QuerySet[ActionLog], since: datetime) -> QuerySet[ActionLog]:
    """Events that occurred at `since` or later. Validation keeps occurred_at at most
    MAX_FUTURE_SKEW after received_at, so those were all received since `since` - MAX_FUTURE_SKEW:
    on PostgreSQL that bound loses nothing and skips every partition received before it. SQLite
    has one table, where the bound would only make an index range read each row."""
    queryset = queryset.filter(occurred_at__gte=since)
    if connections[queryset.db].vendor == "postgresql":
        queryset = queryset.filter(received_at__gte=since - MAX_FUTURE_SKEW)
    return queryset


def _before(queryset: QuerySet[ActionLog], position: tuple[datetime, int]) -> QuerySet[ActionLog]:
    """Rows strictly after `position` in newest-first order: (occurred_at, id) < position.

    Written as `occurred_at <= t AND NOT (occurred_at = t AND id >= i)`, a form both databases
    drive from an index range, so any page costs what the first one does.
    """
    occurred_at, pk = position
    return queryset.filter(occurred_at__lte=occurred_at).exclude(occurred_at=occurred_at, id__gte=pk)


def _page(filters: EventFilters) -> list[ActionLog]:
    queryset = event_queryset(filters)
    if filters.after is not None:
        queryset = _before(queryset, filters.after)
    return list(queryset.order_by("-occurred_at", "-id")[: filters.limit + 1])


def event_list(filters: EventFilters) -> tuple[list[ActionLog], tuple[datetime, int] | None]:
    """Return one page, newest first, and the position after it (None on the last page).

    `action=invoice.*` spans several actions, which no index returns in time order: rather
    than sort every matching row, merge the pages of each action (each an ordered index range).
    """
    actions = None
    if filters.action_prefix is not None:
        actions = event_distinct_values("action", prefix=filters.action_prefix, limit=MAX_MERGED_ACTIONS + 1)
    if actions is not None and len(actions) <= MAX_MERGED_ACTIONS:
        pages = [_page(replace(filters, action=action, action_prefix=None)) for action in actions]
        newest_first = heapq.merge(*pages, key=lambda event: (event.occurred_at, event.id), reverse=True)
        page = list(itertools.islice(newest_first, filters.limit + 1))
    else:
        page = _page(filters)
    if len(page) <= filters.limit:
        return page, None
    last = page[filters.limit - 1]
    return page[: filters.limit], (last.occurred_at, last.id)


def events_iterate(queryset: QuerySet[ActionLog], chunk_size: int = 2000) -> Iterator[ActionLog]:
    """Yield every event of a queryset, newest first, holding one chunk in memory at a time.

    Keyset chunks rather than a server-side cursor: each chunk is a short query, so a slow
    reader holds no transaction open, and it works behind PgBouncer too.
    """
    queryset = queryset.order_by("-occurred_at", "-id")
    position = None
    while True:
        rest = queryset if position is None else _before(queryset, position)
        chunk = replica_fallback(list, rest[:chunk_size])  # a replica that fails mid-way: the primary
        yield from chunk
        if len(chunk) < chunk_size:
            return
        position = (chunk[-1].occurred_at, chunk[-1].id)


def _equalities(filters: EventFilters) -> dict:
    names = ("actor_id", "actor_type", "action", "target_type", "target_id", "outcome", "source_id")
    return {name: getattr(filters, name) for name in names if getattr(filters, name) is not None}


def event_distinct_values(column: str, limit: int = 200, prefix: str | None = None) -> list[str]:
    """Distinct non-empty values of an indexed column (starting with `prefix`), by a loose
    index scan.

    `SELECT DISTINCT` reads the whole index; this asks the index for the next value after the
    last one found, one seek per value, in both databases (a recursive CTE). A prefix is a
    byte-wise range, so it is for `action` only (C-collated on PostgreSQL).
    """
    if column not in ("action", "actor_type", "target_type") or (prefix and column != "action"):
        raise ValueError(f"no suitable index for {column!r}")
    db = connections[router.db_for_read(ActionLog)]
    table = db.ops.quote_name(ActionLog._meta.db_table)
    col = db.ops.quote_name(column)
    if prefix:
        upper = _after_prefix(prefix)
        first, rest, params = f"{col} >= %s AND {col} < %s", f"AND {col} < %s", [prefix, upper, upper, limit]
    else:
        first, rest, params = f"{col} > ''", "", [limit]
    sql = f"""
        WITH RECURSIVE found(value, n) AS (
            SELECT MIN({col}), 1 FROM {table} WHERE {first}
            UNION ALL
            SELECT (SELECT MIN({col}) FROM {table} WHERE {col} > found.value {rest}), n + 1
            FROM found WHERE found.value IS NOT NULL AND n < %s
        )
        SELECT value FROM found WHERE value IS NOT NULL
    """
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return [value for (value,) in cursor.fetchall()]


def _after_prefix(prefix: str) -> str:
    """The smallest string above every string that starts with `prefix` (ASCII actions)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def event_count_estimate() -> int | None:
    """PostgreSQL's planner estimate of the table's rows (None elsewhere, or before ANALYZE)."""
    db = connections[router.db_for_read(ActionLog)]
    if db.vendor != "postgresql":
        return None
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [ActionLog._meta.db_table]
        )
        row = cursor.fetchone()
    return row[0] if row and row[0] > 0 else None


def event_search(queryset: QuerySet[ActionLog], term: str) -> QuerySet[ActionLog]:
    """Exact matches only, each an index range: an event id (UUID), `target:[type:]id`, or an
    actor id. Never LIKE '%…%', which reads the whole table."""
    term = term.strip()
    if not term:
        return queryset
    try:
        return queryset.filter(uuid=uuid.UUID(term))
    except ValueError:
        pass
    if term.startswith(TARGET_PREFIX):
        target_type, separator, target_id = term.removeprefix(TARGET_PREFIX).partition(":")
        if not separator:
            return queryset.filter(target_id=target_type)
        return queryset.filter(target_type=target_type, target_id=target_id)
    return queryset.filter(actor_id=term)
