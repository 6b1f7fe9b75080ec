"""A fair queue for SQLite's one writer. On PostgreSQL every function here does nothing.

Which writes take it, and why. SQLite lets one connection write at a time; without the queue,
waiting writers sleep in SQLite's busy handler, which oversleeps (see sqlite_writer_queue), so
every write of the trail's tables (events, leaves, checkpoints, the purge permit) queues:

    ingest, one event     auditlog.ingest.group_commit (the leader, for its group)
    ingest, a batch       auditlog.ingest.services.events_create_batch
    internal events       auditlog.ingest.services.event_record_internal (admin logins, views,
                          exports; the purge command's record)
    sealing               auditlog.trail.tree.leaves_append, per block; checkpoint_sign
    purging               auditlog.trail.retention.events_purge, per batch
    demo data             auditlog.ingest.storage.events_bulk_insert_prepared, per chunk

What goes without it, on purpose (in the code, a write of the trail's tables that does says
so with outside_the_queue):
    flush                 wipes a database for tests and development; nothing else runs
    API keys              their own table: create and revoke are an operator's rare writes,
                          and a key's last use is skippable bookkeeping with a 50 ms bound
                          (lock_wait_at_most), so a busy writer costs it a skipped update
    migrations            run before the service starts (the Procfile's release step)

The queue is re-entrant within a thread: a write that queues inside a block that already
holds it does not wait for itself.
tests/conftest.py holds every test on SQLite to this: a statement that writes the trail's
tables while its thread neither holds the queue nor is outside_the_queue fails the test.
"""

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import IO

from django.conf import settings
from django.db import OperationalError, connection, transaction

from auditlog.db.private_files import private_file_open_append
from auditlog.monitoring import metrics


@contextmanager
def sqlite_writer_queue(since: float | None = None):
    """On SQLite, queue the writers of every process on a lock file beside the database.

    SQLite's own busy handler sleeps in growing steps (1, 2, 5 ... up to 100 ms), so waiting
    writers oversleep each other's transactions, which take a fraction of a millisecond; a lock
    polled from 0.1 ms up to every millisecond hands over almost at once and favours no
    process. It gives up after SQLITE_BUSY_TIMEOUT like SQLite would: the request answers 503
    and nothing is stored. The bound counts from `since` (time.monotonic(); default now) and
    covers SQLite's own wait for a writer from outside the service too (the sqlite3 shell in
    a transaction): a request waits SQLITE_BUSY_TIMEOUT in all, not once per queue.
    """
    if connection.vendor != "sqlite" or _thread.held:
        yield
        return
    deadline = (time.monotonic() if since is None else since) + settings.SQLITE_BUSY_TIMEOUT
    lock_file = _lock_file(f"{connection.settings_dict['NAME']}.writer-lock")
    pause = 0.0001
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OperationalError("database is locked (writer queue)") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.001)
    remaining = deadline - time.monotonic()
    _thread.held = True
    try:
        if remaining < settings.SQLITE_BUSY_TIMEOUT - QUEUE_WAIT_UNNOTICED:
            with lock_wait_at_most(max(remaining, 0.0)):
                yield
        else:
            yield
    finally:
        _thread.held = False
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        # Counted once the queue is free again: the next writer never waits for the count.
        metrics.observe(metrics.WRITER_QUEUE_SECONDS, settings.SQLITE_BUSY_TIMEOUT - remaining)


class _ThreadState(threading.local):
    held = False  # this thread holds the queue
    outside: str | None = None  # why this thread writes without it, within outside_the_queue


_thread = _ThreadState()


@contextmanager
def outside_the_queue(reason: str):
    """Mark writes that go without the queue on purpose (see the module's docstring)."""
    before, _thread.outside = _thread.outside, reason
    try:
        yield
    finally:
        _thread.outside = before


def writes_may_go() -> bool:
    """Whether this thread may write the trail's tables now: it holds the queue or said why not."""
    return _thread.held or _thread.outside is not None


# A wait in the queue shorter than this leaves SQLite's busy timeout as it is (setting it costs
# two PRAGMAs; the wait it trims is within this of the bound anyway).
QUEUE_WAIT_UNNOTICED = 0.05


# Each thread keeps its lock file open: opening it per write cost 10 us, as much as a small
# INSERT. One open file per thread, because flock belongs to the open file: threads sharing
# one would all hold the lock at once.
_open_files = threading.local()


def _lock_file(path: str) -> IO:
    files = _open_files.__dict__.setdefault("by_path", {})
    if path not in files:
        files[path] = private_file_open_append(path)  # open for the thread's life
    return files[path]


def _forget_after_fork() -> None:
    """A forked child must not share its parent's open files: it would share their locks."""
    global _open_files, _thread
    _open_files = threading.local()
    _thread = _ThreadState()


os.register_at_fork(after_in_child=_forget_after_fork)


@contextmanager
def lock_wait_at_most(seconds: float):
    """Within the block, a write waits at most `seconds` for a lock, then raises OperationalError.

    For writes that may be skipped (bookkeeping such as a key's last use): a lock held from
    outside (a migration, an operator's transaction, the sqlite3 shell) must not hold up the
    request around them for the full busy or lock timeout.
    """
    milliseconds = round(seconds * 1000)
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
        try:
            yield
        finally:
            usual = round(connection.settings_dict["OPTIONS"]["timeout"] * 1000)
            connection.connection.execute(f"PRAGMA busy_timeout = {usual}")
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = %s", [f"{milliseconds}ms"])
        yield
