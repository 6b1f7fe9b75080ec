"""A fair queue for SQLite's one writer, shared by ingest (group commits and batches),
sealing and purging."""

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import IO

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
    try:
        yield
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)


# Each thread keeps its lock file open: opening it per write cost 10 us, as much as a small
# INSERT. One open file per thread, because flock belongs to the open file: threads sharing
# one would all hold the lock at once.
_open_files = threading.local()


def _lock_file(path: str) -> IO:
    files = _open_files.__dict__.setdefault("by_path", {})
    if path not in files:
        files[path] = open(path, "a")  # noqa: SIM115 (open for the thread's life)
    return files[path]


def _forget_after_fork() -> None:
    """A forked child must not share its parent's open files: it would share their locks."""
    global _open_files
    _open_files = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)
