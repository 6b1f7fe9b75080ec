"""A fair queue for SQLite's one writer, shared by ingest (group commits and batches),
sealing and purging."""

import fcntl
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection


@contextmanager
def sqlite_writer_queue():
    """On SQLite, queue the writers of every process on a lock file beside the database.

    SQLite's own busy handler sleeps in growing steps (1, 2, 5 ... up to 100 ms), so waiting
    writers oversleep each other's transactions, which take a fraction of a millisecond; a lock
    polled from 0.1 ms up to every millisecond hands over almost at once and favours no
    process. It gives up after SQLITE_BUSY_TIMEOUT like SQLite would: the request answers 503
    and nothing is stored.
    """
    if connection.vendor != "sqlite":
        yield
        return
    deadline = time.monotonic() + settings.SQLITE_BUSY_TIMEOUT
    with open(f"{connection.settings_dict['NAME']}.writer-lock", "a") as lock_file:
        pause = 0.0001
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OperationalError("database is locked (batch writer queue)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
