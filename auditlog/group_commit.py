"""Group commit: the single-event inserts of one process that arrive together share a statement.

A lone INSERT costs mostly per statement and per commit, not per row: PostgreSQL parses,
starts an executor and flushes its WAL for each; SQLite takes its write lock, rereads the
pages other connections changed and writes every index page it touched to the WAL. Under
load a worker's threads reach their insert at nearly the same time. The first becomes the
leader: it stores every row waiting, in one `INSERT ... ON CONFLICT DO NOTHING RETURNING`
on its own connection, wakes their threads and hands leadership to the next thread waiting.
Nobody waits for company: a quiet service inserts each event alone, as before.

Each request still answers after its own row is committed, or fails when the statement
failed, in which case no row of the group is stored (one statement, one transaction).
"""

import copy
import threading

from django.db import DEFAULT_DB_ALIAS, DataError, IntegrityError, OperationalError, connections

from auditlog.bulk import events_insert_new
from auditlog.locking import sqlite_writer_queue

MAX_GROUP = 64  # rows per statement; a worker rarely has more threads than this anyway


class _Slot:
    __slots__ = ("row", "wake", "lead", "stored", "error")

    def __init__(self, row: tuple):
        self.row = row
        # A waiting thread blocks on a lock it holds until the leader releases it: a lock costs
        # a tenth of a threading.Event, and the leader itself never needs one.
        self.wake: threading.Lock | None = None
        self.lead = False  # set when leadership is handed to this slot's thread
        self.stored: bool | None = None  # False: its idempotency key was taken already
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._leading = False
        self.statements = 0  # groups stored so far, and their rows: rows / statements is the
        self.rows = 0  # average group size

    def insert(self, row: tuple) -> bool:
        """Store one row from EventRows, outside any transaction; False if its key was taken."""
        slot = _Slot(row)
        with self._lock:
            self._waiting.append(slot)
            lead, self._leading = not self._leading, True
            if not lead:
                slot.wake = threading.Lock()
                slot.wake.acquire()
        if not lead:
            _release_pooled_connection()
            slot.wake.acquire()  # released by a leader: stored, failed, or leading now
            slot.wake = None
            lead = slot.lead
        if lead:
            self._lead()
        if slot.error is not None:
            raise _own_copy(slot.error)
        if slot.stored is None:  # the leader died of something that was not an Exception
            raise OperationalError("the insert of this event did not complete")
        return slot.stored

    def waiting(self) -> int:
        """Rows queued behind the statement in flight."""
        with self._lock:
            return len(self._waiting)

    def _lead(self) -> None:
        with self._lock:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            self.statements += 1
            self.rows += len(group)
        try:
            with sqlite_writer_queue():
                _store(group)
        finally:
            with self._lock:
                successor = self._waiting[0] if self._waiting else None
                if successor is None:
                    self._leading = False
                else:
                    successor.lead = True
            for slot in group:
                if slot.wake is not None:  # the leader's own slot has none
                    slot.wake.release()
            if successor is not None:
                successor.wake.release()


def _store(group: list[_Slot]) -> None:
    """Set each slot's outcome; never raise an Exception (each thread raises its own)."""
    try:
        stored = events_insert_new([slot.row for slot in group])
    except (IntegrityError, DataError) as exc:
        if len(group) == 1:
            group[0].error = exc
        else:
            for slot in group:  # a row the database refuses must not fail its neighbours
                _store([slot])
        return
    except Exception as exc:  # the database is unavailable: the whole group fails (503)
        for slot in group:
            slot.error = exc
        return
    for slot in group:
        slot.stored = slot.row[0] in stored


def _release_pooled_connection() -> None:
    """Never hold a pooled connection while waiting on another thread: the leader may need it."""
    db = connections[DEFAULT_DB_ALIAS]
    if getattr(db, "pool", None) is not None and db.connection is not None and not db.in_atomic_block:
        db.close()  # returns it to the pool


def _own_copy(error: BaseException) -> BaseException:
    """The group's error for one thread to raise: a shared exception object raised in several
    threads at once would collect all their tracebacks."""
    mine = copy.copy(error)
    mine.__cause__ = error.__cause__ or error
    return mine.with_traceback(None)


group_commit = GroupCommit()
