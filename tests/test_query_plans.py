"""Every query the admin and the API run starts from an index and never sorts the whole result."""

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.http import QueryDict
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from auditlog.admin.chart import activity_chart
from auditlog.admin.pagination import COUNT_BOUND
from auditlog.models import ActionLog, ApiKey
from auditlog.reading.filters import event_filters_parse
from auditlog.reading.keyset import cursor_encode
from auditlog.reading.selectors import (
    event_list,
    event_queryset,
    idempotency_lookup_query,
    source_today,
)

pytestmark = pytest.mark.django_db

TABLE = ActionLog._meta.db_table


@pytest.fixture(autouse=True)
def planner_must_use_indexes():
    """PostgreSQL rightly seq-scans a tiny table: make that the last resort, so a query with no
    usable index still shows a Seq Scan (or a Sort) and fails the test."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off; SET enable_sort = off; SET enable_bitmapscan = off")
    yield


def problems(plan: str) -> list[str]:
    if connection.vendor == "sqlite":
        found = [line for line in plan.splitlines() if re.search(rf"SCAN {TABLE}\s*$", line)]
        return found + [line for line in plan.splitlines() if "TEMP B-TREE" in line]
    # A Sort node (not a Merge Append's "Sort Key", which merges the partitions' index order).
    return [line for line in plan.splitlines() if "Seq Scan" in line or re.search(r"Sort  \(", line)]


def assert_indexed(queryset):
    plan = queryset.explain()
    assert problems(plan) == [], plan


def api_page(**params):
    query = QueryDict(mutable=True)
    query.update(params)
    filters = event_filters_parse(query)
    return event_queryset(filters).order_by("-occurred_at", "-id")[: filters.limit + 1]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"actor_id": "42"},
        {"action": "invoice.delete"},
        {"target_type": "invoice", "target_id": "7"},
        {"target_id": "7"},
        {"target_type": "invoice"},
        {"actor_type": "service"},
        {"outcome": "failure"},
        {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
        {"action": "user.login", "since": "2026-01-01T00:00:00Z"},
    ],
    ids=lambda p: ",".join(p) or "unfiltered",
)
def test_api_pages_use_an_index(params):
    assert_indexed(api_page(**params))


def test_api_prefix_page_merges_per_action_index_ranges(api, django_assert_num_queries):
    """`action=invoice.*`: one loose scan for the actions, then one ordered range per action."""
    for action in ("invoice.create", "invoice.delete", "invoice.send", "user.login"):
        assert api.post("/api/v1/events", {"action": action, "actor": {"id": "1"}}).status_code == 201
    filters = event_filters_parse(QueryDict("action=invoice.*&limit=2"))

    with django_assert_num_queries(4):
        page, after = event_list(filters)

    stored = ActionLog.objects.filter(action__startswith="invoice.").order_by("-occurred_at", "-id")
    assert [event.id for event in page] == [event.id for event in stored[:2]]
    assert after is not None
    for action in ("invoice.create", "invoice.delete", "invoice.send"):
        assert_indexed(api_page(action=action))


def test_api_page_after_a_cursor_uses_an_index():
    from datetime import UTC, datetime

    from auditlog.reading.selectors import _before

    queryset = _before(
        event_queryset(event_filters_parse(QueryDict())), (datetime(2026, 1, 1, tzinfo=UTC), 10)
    )
    assert_indexed(queryset.order_by("-occurred_at", "-id")[:51])
    assert cursor_encode(datetime(2026, 1, 1, tzinfo=UTC), 10)  # the same position, opaque


def test_api_detail_uses_the_uuid_index():
    assert_indexed(ActionLog.objects.filter(uuid="01a20111-a8c8-77cd-83f3-fb9352fb312a"))


def changelist(admin_user, **params):
    request = RequestFactory().get("/admin/auditlog/actionlog/", params)
    request.user = admin_user
    return site._registry[ActionLog].get_changelist_instance(request)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"action": "user.login"},
        {"actor_type": "service"},
        {"target_type": "invoice"},
        {"outcome__exact": "failure"},
        {"since": "2026-01-01", "until": "2026-01-31"},
        {"q": "42"},
        {"q": "target:7"},
        {"q": "target:invoice:7"},
        {"q": "01a20111-a8c8-77cd-83f3-fb9352fb312a"},
        {"action": "user.login", "since": "2026-01-01"},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "unfiltered",
)
def test_admin_page_and_count_use_an_index(admin_user, params):
    cl = changelist(admin_user, **params)

    assert_indexed(cl.queryset[: cl.list_per_page])  # the page (the changelist's own ordering)
    count = cl.queryset.order_by()[: COUNT_BOUND + 1]  # the bounded count
    if params:
        assert_indexed(count)
    else:  # nothing to filter: reading the first COUNT_BOUND + 1 rows in any order is the cheapest
        assert not count.query.where and count.query.high_mark == COUNT_BOUND + 1


@pytest.mark.parametrize("column", ["action", "actor_type", "target_type"])
def test_filter_choices_come_from_a_loose_index_scan(column):
    """Each step of the recursive CTE is one MIN() on an index, never a scan."""
    col = connection.ops.quote_name(column)
    with connection.cursor() as cursor:
        prefix = "EXPLAIN QUERY PLAN" if connection.vendor == "sqlite" else "EXPLAIN"
        cursor.execute(f"{prefix} SELECT MIN({col}) FROM {TABLE} WHERE {col} > %s", ["x"])
        plan = "\n".join(" ".join(map(str, row)) for row in cursor.fetchall())
    assert problems(plan) == [], plan
    assert "INDEX" in plan.upper()


def test_event_list_reads_one_row_more_than_the_page(django_assert_num_queries):
    with django_assert_num_queries(1):
        event_list(event_filters_parse(QueryDict("limit=10")))


def test_idempotency_lookup_searches_the_unique_key_index():
    sql, params = idempotency_lookup_query(1, [f"key-{n}" for n in range(1000)])
    with connection.cursor() as cursor:
        cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql, params)
        plan = "\n".join(" ".join(map(str, row)) for row in cursor.fetchall())
    # searched by both columns, not just the source's part of the index
    by_key = (
        r"Index Cond: .*source_id.*idempotency_key"
        if connection.vendor == "postgresql"
        else (r"SEARCH auditlog_eventkey USING INDEX \S+ \(source_id=\? AND idempotency_key=\?\)")
    )
    assert re.search(by_key, plan), plan
    assert problems(plan) == [], plan


def test_a_read_keys_own_list_uses_the_source_index():
    """A key with the read scope lists its own source's events newest first from one index range."""
    query = QueryDict(mutable=True)
    filters = replace(event_filters_parse(query), source_id=1)
    plan = event_queryset(filters).order_by("-occurred_at", "-id")[:51].explain()
    # the index itself, or (PostgreSQL) each partition's copy of it
    assert re.search(r"auditlog_source|source_id_occurred_at_id_idx", plan), plan
    assert problems(plan) == [], plan


def test_the_index_summary_counts_from_indexes():
    """The admin index's per-source counts (events and failures since midnight) and newest event."""
    source = ApiKey.objects.create(name="s", prefix="p", key_hash="h" * 64, scopes="write")
    today = source_today(source, datetime(2026, 12, 4, tzinfo=UTC))
    for queryset in (
        today[:10001],
        today.filter(outcome="failure")[:10001],
        ActionLog.objects.filter(source=source).order_by("-occurred_at", "-id")[:1],
    ):
        plan = queryset.explain()
        assert problems(plan) == [], plan


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"action": "user.login"},
        {"outcome__exact": "failure"},
        {"since": "2026-11-01", "until": "2026-12-04"},
        {"since": "2026-12-03T10:00", "q": "ada-42"},
    ],
)
def test_the_activity_charts_bucket_counts_use_an_index(admin_user, params):
    """Each query the admin's chart runs is an ordered scan of one index range, which its limit
    stops (no Sort, no scan of the table): what bounds the chart at any size."""
    request = RequestFactory().get("/admin/auditlog/actionlog/", params)
    request.user = admin_user
    queryset = site._registry[ActionLog].get_changelist_instance(request).queryset
    with CaptureQueriesContext(connection) as queries:
        chart = activity_chart(request, queryset)

    assert len(queries) == 2 * len(chart.bars)
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
            cursor.execute(explain + query["sql"])
            plan = "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())
            assert "LIMIT 10001" in query["sql"] and problems(plan) == [], (query["sql"], plan)
