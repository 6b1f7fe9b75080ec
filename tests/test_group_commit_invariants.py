"""Group commit's rules (the docstring of auditlog/ingest/group_commit.py), exercised by many
threads on one GroupCommit, with the real insert on the real database, instrumented."""

import threading
import time
import types

import pytest
from django.db import connection
from django.utils import timezone

from auditlog.events.uuid7 import uuid7
from auditlog.events.validation import event_validate
from auditlog.ingest import group_commit as module
from auditlog.ingest.group_commit import MAX_GROUP, GroupCommit
from auditlog.ingest.storage import EventRows
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope
from tests.conftest import make_event

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 3 * MAX_GROUP + 7  # enough for several full groups and a partial one


class Instrumented:
    """Wraps the module's insert and the locks it wakes threads with, and records what they do."""

    def __init__(self, monkeypatch, group_commit: GroupCommit):
        self.group_commit = group_commit
        self.guard = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.groups: list[list] = []
        self.wake_locks: list[CountingLock] = []
        self.connections_released = 0
        self.queued: list = []
        insert, release = module.events_insert_new, module.pooled_connection_release
        monkeypatch.setattr(module, "events_insert_new", lambda rows: self._insert(insert, rows))
        monkeypatch.setattr(module, "pooled_connection_release", lambda: self._release(release))
        monkeypatch.setattr(module, "threading", types.SimpleNamespace(Lock=self._lock))

    def _insert(self, insert, rows):
        with self.guard:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.groups.append([row[0] for row in rows])
            first = len(self.groups) == 1
        try:
            if first:  # a slow statement: every other thread queues behind it
                deadline = time.monotonic() + 20
                while self.group_commit.waiting() < THREADS - 1 and time.monotonic() < deadline:
                    time.sleep(0.005)
                with self.group_commit._lock:  # the queue, in the order the threads joined it
                    self.queued = [slot.row[0] for slot in self.group_commit._waiting]
            return insert(rows)
        finally:
            with self.guard:
                self.in_flight -= 1

    def _release(self, release):
        with self.guard:
            self.connections_released += 1
        release()

    def _lock(self):
        lock = CountingLock()
        with self.guard:
            self.wake_locks.append(lock)
        return lock


class CountingLock:
    def __init__(self):
        self._lock = threading.Lock()
        self.releases = 0

    def acquire(self, *args, **kwargs):
        return self._lock.acquire(*args, **kwargs)

    def release(self):
        self.releases += 1
        self._lock.release()


@pytest.fixture
def rows():
    source = api_key_create(name="producer", scopes={Scope.WRITE})[0]
    make = EventRows(received_at=timezone.now(), source_id=source.pk)
    return [make.row(event_validate(make_event(idempotency_key=f"k{n}")), uuid7()) for n in range(THREADS)]


def insert_from_threads(group_commit: GroupCommit, rows: list) -> list:
    results = [None] * len(rows)

    def run(index):
        try:
            results[index] = group_commit.insert(rows[index])
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread was never woken"
    return results


def test_one_leader_at_a_time_groups_bounded_and_every_row_stored_once(monkeypatch, rows):
    group_commit = GroupCommit()  # its own lock made before the wake locks are counted
    watch = Instrumented(monkeypatch, group_commit)

    results = insert_from_threads(group_commit, rows)

    assert results == [True] * THREADS
    assert watch.most_in_flight == 1  # rule 1: statements never overlap
    # rule 4: the first statement held until all others queued, so they went 64, 64, 64, 6
    full, rest = [MAX_GROUP] * 3, THREADS - 1 - 3 * MAX_GROUP
    assert [len(group) for group in watch.groups] == [1, *full, rest]
    # rule 3: oldest first: the rows queued behind the first statement went in the order
    # they joined the queue, and every row was in exactly one statement
    stored_in_statements = [uuid for group in watch.groups for uuid in group]
    assert stored_in_statements[1:] == watch.queued
    assert sorted(stored_in_statements) == sorted(row[0] for row in rows)
    assert ActionLog.objects.count() == THREADS
    assert (group_commit.statements, group_commit.rows) == (len(watch.groups), THREADS)
    assert group_commit.waiting() == 0 and not group_commit._leading  # leadership given up


def test_every_waiting_thread_is_woken_exactly_once_having_released_its_connection(monkeypatch, rows):
    group_commit = GroupCommit()  # its own lock made before the wake locks are counted
    watch = Instrumented(monkeypatch, group_commit)

    results = insert_from_threads(group_commit, rows)

    assert results == [True] * THREADS
    # rule 2: one wake lock per thread that waited, each released once (a second release of a
    # lock raises, and a thread never released would still be alive above)
    assert len(watch.wake_locks) > 0
    assert [lock.releases for lock in watch.wake_locks] == [1] * len(watch.wake_locks)
    # rule 6: exactly the threads that waited gave their connection back first
    assert watch.connections_released == len(watch.wake_locks)
