"""Events partitioned by time on PostgreSQL (auditlog.db.partitions), idempotency keys in their own
table on both databases, and retention by partition."""

import gzip
import io
import itertools
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.http import QueryDict
from django.utils import timezone

from auditlog.checks import partition_problems
from auditlog.db.partitions import (
    events_partitioned,
    function_install,
    ingest_partitions,
    partition_ensure,
    partitions_ensure_ahead,
    partitions_ensure_range,
    partitions_list,
)
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.events.uuid7 import uuid7
from auditlog.events.validation import event_validate
from auditlog.ingest.storage import EventRows, events_insert
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, EventKey, RetentionRecord, Scope
from auditlog.reading.filters import event_filters_parse
from auditlog.reading.selectors import event_queryset
from auditlog.trail.note import Signer
from auditlog.trail.tree import tree_append
from auditlog.trail.tree_verify import tree_verify
from tests.conftest import ApiClient, as_owner, make_event, requires_postgres

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("maintenance_role")]


@pytest.fixture
def signer(settings):
    signer = Signer.generate("partitions.example/log")
    settings.AUDITLOG_TRAIL_KEY = signer.text()
    settings.AUDITLOG_TRAIL_VERIFIER_KEYS = []
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0
    settings.AUDITLOG_SEAL_BOUND_SECONDS = 10**9
    settings.AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS = 0
    return signer


def old_keyed_events(count: int, days_ago: int) -> tuple[int, list[str]]:
    """`count` events with idempotency keys, received `days_ago` days ago; their source and keys."""
    source = api_key_create(name="backfill", scopes={Scope.WRITE})[0]
    received_at = timezone.now() - timedelta(days=days_ago)
    partitions_ensure_range(received_at, received_at)
    make = EventRows(received_at=received_at, source_id=source.pk)
    keys = [f"old-{n}" for n in range(count)]
    rows = [make.row(event_validate(make_event(idempotency_key=key)), uuid7()) for key in keys]
    with sqlite_writer_queue(), transaction.atomic():
        events_insert(rows)
    return source.pk, keys


def seal():
    upto = ActionLog.objects.order_by("-id").values_list("id", flat=True).first()
    return tree_append(upto_id=upto, block_size=1000)


def test_a_purge_takes_the_events_idempotency_keys_with_them(signer):
    """Keys live as long as their events: a purge removes both (by partition or in batches)."""
    source_id, keys = old_keyed_events(40, days_ago=200)
    kept = old_keyed_events(5, days_ago=1)[1]
    seal()
    assert EventKey.objects.filter(source_id=source_id).count() == 40

    call_command("auditlog_purge", "--older-than", "100", stdout=io.StringIO())

    assert not EventKey.objects.filter(source_id=source_id).exists()
    assert EventKey.objects.filter(idempotency_key__in=kept).count() == 5
    assert tree_verify().ok


def test_a_replayed_key_is_stored_once_and_answered_with_the_original(client):
    writer = ApiClient(client, api_key_create(name="producer", scopes={Scope.WRITE})[1])
    event = make_event(idempotency_key="retry-1")
    first = writer.post("/api/v1/events", event)
    again = writer.post("/api/v1/events", event)
    other = writer.post("/api/v1/events", {**event, "action": "invoice.other"})

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["id"] == first.json()["id"]
    assert EventKey.objects.get(idempotency_key="retry-1").event_uuid.hex == first.json()["id"].replace(
        "-", ""
    )
    assert ActionLog.objects.filter(idempotency_key="retry-1").count() == 1


# --- PostgreSQL: the partitioned table ---------------------------------------------------------


@requires_postgres
def test_after_migrate_the_events_table_is_partitioned_with_partitions_ahead(settings):
    assert events_partitioned()
    now = timezone.now()
    parts = partitions_list()
    assert sum(part.lower <= now < part.upper for part in parts) == 1
    assert sum(part.lower > now for part in parts) >= settings.AUDITLOG_PARTITIONS_AHEAD
    assert partition_problems("default") == []
    settings.AUDITLOG_PARTITIONS_AHEAD = len(parts) + 5
    assert [problem.id for problem in partition_problems("default")] == ["auditlog.W005"]


@requires_postgres
def test_an_event_received_where_no_partition_exists_makes_its_own(client):
    """No default partition and no cron: ingest itself makes the partition, as the runtime role
    (auditlog_partition_ensure is SECURITY DEFINER)."""
    now = timezone.now()
    with as_owner(), connection.cursor() as cursor:
        for part in partitions_list():
            if part.upper > now - timedelta(days=1):
                cursor.execute(f"DROP TABLE {part.name}")
    assert not [part for part in partitions_list() if part.upper > now]
    ingest_partitions.forget()
    writer = ApiClient(client, api_key_create(name="producer", scopes={Scope.WRITE})[1])

    single = writer.post("/api/v1/events", make_event())
    batch = writer.post("/api/v1/events/batch", {"events": [make_event(), make_event()]})

    assert (single.status_code, batch.status_code) == (201, 200), (single.content, batch.content)
    assert [item["status"] for item in batch.json()["results"]] == [201, 201]
    assert sum(part.lower <= timezone.now() < part.upper for part in partitions_list()) == 1
    assert ActionLog.objects.count() == 3


@requires_postgres
def test_whole_partitions_are_dropped_archived_first_and_the_trail_verifies(signer, tmp_path):
    call_command("auditlog_demo", "--count", "3000", "--seed", "4", stdout=io.StringIO())
    source_id, _ = old_keyed_events(30, days_ago=80)
    seal()
    cutoff = timezone.now() - timedelta(days=30)
    old = [part for part in partitions_list() if part.upper <= cutoff]
    assert old, "the demo's 90 days span whole months before the cutoff"
    counts = {
        part.name: ActionLog.objects.filter(received_at__gte=part.lower, received_at__lt=part.upper).count()
        for part in old
    }
    out = io.StringIO()

    call_command("auditlog_purge", "--older-than", "30", "--archive-dir", str(tmp_path), stdout=out)

    assert not [part for part in partitions_list() if part.upper <= cutoff]
    for name, count in counts.items():
        assert f"{name}: {count:,} events, dropped whole" in out.getvalue()
        with gzip.open(tmp_path / f"{name}.jsonl.gz", "rt") as archive:
            assert sum(1 for _ in archive) == count
    assert not ActionLog.objects.filter(received_at__lt=cutoff).exists()
    assert not EventKey.objects.filter(source_id=source_id).exists()
    assert RetentionRecord.objects.exists()
    result = tree_verify()
    assert result.ok, result.problems
    assert result.purged >= sum(counts.values())


@requires_postgres
def test_a_time_range_reads_only_the_partitions_it_can_hold():
    partitions_ensure_range(timezone.now() - timedelta(days=120), timezone.now())
    names = [part.name for part in partitions_list()]
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    query = QueryDict(mutable=True)
    query["since"] = since
    plan = event_queryset(event_filters_parse(query)).order_by("-occurred_at", "-id")[:51].explain()
    current = [part.name for part in partitions_list() if part.lower <= timezone.now() < part.upper]

    assert current[0] in plan
    assert [name for name in names if name in plan and name not in current] == [
        part.name for part in partitions_list() if part.lower > timezone.now()
    ]


@requires_postgres
def test_a_changed_interval_fits_new_partitions_between_the_old_ones(settings):
    """From months to weeks: a time a month partition holds stays there, and the weeks after it
    start where it ends, so no time is in two partitions or in none."""
    with as_owner():
        months = partitions_ensure_ahead(timezone.now(), 2)
        settings.AUDITLOG_PARTITION_INTERVAL = "week"
        function_install(connection)
        try:
            inside = partition_ensure(months[-1].lower + timedelta(days=3))
            first_week = partition_ensure(months[-1].upper)
            second_week = partition_ensure(first_week.upper)
        finally:
            settings.AUDITLOG_PARTITION_INTERVAL = "month"
            function_install(connection)

    assert inside == months[-1]
    assert first_week.lower == months[-1].upper
    assert first_week.upper - first_week.lower <= timedelta(days=7)
    assert first_week.upper.weekday() == 0  # then whole weeks, Monday to Monday
    assert second_week.lower == first_week.upper
    assert second_week.upper - second_week.lower == timedelta(days=7)
    parts = partitions_list()
    assert all(a.upper <= b.lower for a, b in itertools.pairwise(parts))
