"""The SQLite writer queue: one writer at a time across threads and processes."""

import threading
import time

import pytest
from django.db import connection

from auditlog.db.writer_queue import sqlite_writer_queue

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
