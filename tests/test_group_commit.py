"""Group commit: concurrent single-event inserts of a process share one statement."""

import sqlite3
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, connection
from django.utils import timezone

from auditlog.events.uuid7 import uuid7
from auditlog.events.validation import event_validate
from auditlog.ingest.group_commit import group_commit
from auditlog.ingest.services import CREATED, REPLAYED, IdempotencyConflict, event_create
from auditlog.ingest.storage import COLUMNS, EventRows
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope
from tests.conftest import make_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source():
    return api_key_create(name="producer", scopes={Scope.WRITE})[0]


@contextmanager
def writes_blocked():
    """Hold the table's write lock from another connection, as a long writer would."""
    if connection.vendor == "sqlite":
        blocker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        blocker = psycopg.connect(**params)
        blocker.execute(f"LOCK TABLE {ActionLog._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


def in_threads(calls) -> list:
    """Run each call in its own thread (its own connection); return results or exceptions."""
    results = [None] * len(calls)

    def run(index, call):
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, results


def wait_until_arrived(count: int, rows_before: int) -> None:
    """Until `count` rows are in the statement in flight or queued behind it."""
    deadline = time.monotonic() + 10
    while (arrived := group_commit.rows - rows_before + group_commit.waiting()) < count:
        assert time.monotonic() < deadline, f"only {arrived} of {count} arrived"
        time.sleep(0.01)


def grouped(calls) -> list:
    """Run the calls while the table is locked: the first statement blocks and the others
    queue behind it, so they share the next one."""
    rows_before = group_commit.rows
    with writes_blocked():
        threads, results = in_threads(calls)
        wait_until_arrived(len(calls), rows_before)
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_inserts_share_one_statement_and_all_are_stored(source):
    statements, rows = group_commit.statements, group_commit.rows
    events = [event_validate(make_event(idempotency_key=f"k{n}")) for n in range(8)]

    outcomes = grouped([lambda event=event: event_create(source=source, event=event) for event in events])

    assert [outcome.status for outcome in outcomes] == [CREATED] * 8
    stored = dict(ActionLog.objects.values_list("idempotency_key", "uuid"))
    assert stored == {f"k{n}": outcomes[n].event.uuid for n in range(8)}
    # the first statement waits on the lock with the rows that came before it; the rest share one
    assert group_commit.statements - statements <= 2
    assert group_commit.rows - rows == 8


def test_a_key_repeated_within_one_statement_is_stored_once_and_replayed_or_refused(source):
    same = make_event(idempotency_key="shared")
    other = make_event(idempotency_key="shared", action="invoice.create")
    events = [event_validate(same), event_validate(same), event_validate(other), event_validate(same)]

    outcomes = grouped([lambda event=event: event_create(source=source, event=event) for event in events])

    stored = ActionLog.objects.get(idempotency_key="shared")
    created = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    created = [outcome for outcome in created if outcome.status == CREATED]
    assert [outcome.event.uuid for outcome in created] == [stored.uuid]
    for event, outcome in zip(events, outcomes, strict=True):
        if event.payload_hash == stored.payload_hash:
            assert outcome.status in (CREATED, REPLAYED) and outcome.event.uuid == stored.uuid
        else:
            assert isinstance(outcome, IdempotencyConflict)


def test_a_row_the_database_refuses_does_not_fail_its_neighbours(source):
    make = EventRows(received_at=timezone.now(), source_id=source.pk)
    rows = [make.row(event_validate(make_event(idempotency_key=f"k{n}")), uuid7()) for n in range(4)]
    refused = list(rows[2])
    refused[COLUMNS.index("outcome")] = "bogus"  # violates the outcome check constraint
    rows[2] = tuple(refused)

    results = grouped([lambda row=row: group_commit.insert(row) for row in rows])

    assert results[0] is True and results[1] is True and results[3] is True
    assert isinstance(results[2], IntegrityError)
    assert set(ActionLog.objects.values_list("idempotency_key", flat=True)) == {"k0", "k1", "k3"}


def short_lock_wait(milliseconds: int = 300):
    """This thread's connection gives up on a held lock after 0.3 s instead of waiting."""
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        connection.connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
    else:
        connection.connection.execute(f"SET lock_timeout = '{milliseconds}ms'")


def test_an_unavailable_database_fails_every_event_of_the_group_and_stores_none(source):
    events = [event_validate(make_event(idempotency_key=f"k{n}")) for n in range(4)]

    def create(event):
        short_lock_wait()
        return event_create(source=source, event=event)

    with writes_blocked():
        threads, results = in_threads([lambda event=event: create(event) for event in events])
        for thread in threads:
            thread.join(30)

    assert all(isinstance(result, OperationalError) for result in results), results
    assert not ActionLog.objects.exists()
    assert group_commit.waiting() == 0
    # and the next event is stored as usual: nothing is left holding the leadership
    assert event_create(source=source, event=event_validate(make_event())).status == CREATED


def test_rows_queued_behind_a_failed_statement_fail_with_it_instead_of_trying_again(source):
    """Otherwise each queued row would lead a statement of its own and wait its timeout out
    in turn: a request would wait several timeouts."""
    statements_before, rows_before = group_commit.statements, group_commit.rows
    events = [event_validate(make_event(idempotency_key=f"k{n}")) for n in range(5)]

    def create(event, lock_wait):
        short_lock_wait(lock_wait)
        return event_create(source=source, event=event)

    with writes_blocked():
        leader, leader_result = in_threads([lambda: create(events[0], 2000)])
        wait_until_arrived(1, rows_before)  # its statement waits on the lock
        queued, queued_results = in_threads([lambda event=event: create(event, 300) for event in events[1:]])
        wait_until_arrived(5, rows_before)
        for thread in leader + queued:
            thread.join(30)

    assert all(isinstance(result, OperationalError) for result in leader_result + queued_results)
    assert group_commit.statements - statements_before == 1
    assert not ActionLog.objects.exists()
