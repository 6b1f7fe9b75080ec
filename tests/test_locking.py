"""The SQLite writer queue: one writer at a time across threads and processes."""

import fcntl
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from auditlog.db.writer_queue import outside_the_queue, sqlite_writer_queue
from auditlog.events.uuid7 import uuid7
from auditlog.events.validation import event_validate
from auditlog.ingest.storage import EventRows, events_insert_new
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope
from tests import conftest
from tests.conftest import make_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite-specific behaviour")


def test_a_second_thread_waits_until_the_first_leaves():
    entered, left = {}, {}

    def writer(name, hold):
        with sqlite_writer_queue():
            entered[name] = time.monotonic()
            time.sleep(hold)
            left[name] = time.monotonic()
        connection.close()

    first = threading.Thread(target=writer, args=("first", 0.3))
    first.start()
    while "first" not in entered:
        time.sleep(0.005)
    second = threading.Thread(target=writer, args=("second", 0))
    second.start()
    first.join(10)
    second.join(10)
    assert entered["second"] >= left["first"]


def test_the_same_thread_can_queue_again_after_leaving():
    for _ in range(3):
        with sqlite_writer_queue():
            pass


def _queue_held_elsewhere() -> bool:
    """Whether another open file (as another process would) finds the writer lock taken."""
    with open(f"{connection.settings_dict['NAME']}.writer-lock", "a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(other, fcntl.LOCK_UN)
        return False


def test_the_queue_is_reentrant_and_the_inner_block_does_not_release_the_outer():
    with sqlite_writer_queue():
        with sqlite_writer_queue():  # would wait for itself if the queue were not re-entrant
            assert _queue_held_elsewhere()
        assert _queue_held_elsewhere()  # still the outer block's
    assert not _queue_held_elsewhere()


# The rule the suite holds every test to (tests/conftest.py): the app writes the trail's tables
# only inside the queue, or outside_the_queue with a reason. These show that the watch fails.


def _row():
    source = api_key_create(name="producer", scopes={Scope.WRITE})[0]
    event = event_validate(make_event())
    return EventRows(received_at=timezone.now(), source_id=source.pk).row(event, uuid7())


def test_a_write_of_the_trail_outside_the_queue_is_caught():
    events_insert_new([_row()])  # the app's own insert, called as a careless new path would

    caught, conftest.unqueued_writes[:] = list(conftest.unqueued_writes), []
    assert len(caught) == 1 and "INSERT INTO auditlog_actionlog" in caught[0]


def test_a_write_inside_the_queue_or_declared_outside_it_is_not_caught():
    with sqlite_writer_queue():
        events_insert_new([_row()])
    with outside_the_queue("a test of the rule"):
        events_insert_new([_row()])

    assert conftest.unqueued_writes == []
    assert ActionLog.objects.count() == 2
