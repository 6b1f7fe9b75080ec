"""Group commit: the single-event inserts of one process that arrive together share a statement.

A lone INSERT costs mostly per statement and per commit, not per row: PostgreSQL parses,
starts an executor and flushes its WAL for each; SQLite takes its write lock, rereads the
pages other connections changed and writes every index page it touched to the WAL. Under
load a worker's threads reach their insert at nearly the same time. The first becomes the
leader: it stores every row waiting, in one statement (auditlog.ingest.storage's
events_insert_new: the rows whose idempotency keys are new) on its own connection, wakes
their threads and hands leadership to the next thread waiting. Nobody waits for company: a
quiet service inserts each event alone, as before.

Each request still answers after its own row is committed, or fails when the statement
failed, in which case no row of the group is stored (one statement, one transaction).

The rules, which tests/test_group_commit_invariants.py exercises:

1. At most one leader at a time in a process. `_leading` is True from the moment a thread
   finds it False (and becomes leader) until a leader finds no one waiting; in between,
   leadership only passes from hand to hand (rule 3). So statements never overlap, and the
   writer queue and the connection pool see one inserting thread per process.
2. Every waiting thread is woken exactly once, by a leader releasing its `wake` lock: either
   as a member of the group just stored (its outcome set first) or as the next leader (its
   `lead` set first), never both, since the next leader is still in `_waiting` when the group
   has left it. A lock released twice would raise; one never released would hang a request.
3. The next leader is the first thread waiting. It takes the next group, itself included,
   oldest first: a thread waits at most for the groups queued before it.
4. A group is at most MAX_GROUP rows, in arrival order.
5. Every slot has exactly one outcome when its thread wakes: stored, its key taken (False),
   or an error. A row the database refuses (IntegrityError, DataError) fails alone: the
   group is retried row by row. A database that fails (unavailable, locked, timed out) fails
   the group and every row waiting behind it at once, so no request waits out more than one
   failed statement; nothing of theirs is stored.
6. A waiting thread gives its pooled connection back before it sleeps (the leader may need
   one); only the leader's connection runs the statement.
"""

import copy
import threading
import time

from django.db import DataError, IntegrityError, OperationalError

from auditlog.db.connections import pooled_connection_release
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.ingest.storage import events_insert_new
from auditlog.monitoring import metrics

MAX_GROUP = 64  # rows per statement; a worker rarely has more threads than this anyway


class _Slot:
    __slots__ = ("row", "since", "wake", "lead", "stored", "error")

    def __init__(self, row: tuple):
        self.row = row
        self.since = time.monotonic()  # the SQLite writer queue's bound counts from here
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
            pooled_connection_release()  # the leader may need it
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
        metrics.observe(metrics.GROUP_COMMIT_ROWS, len(group))
        failure = None
        try:
            with sqlite_writer_queue(since=group[0].since):
                failure = _store(group)
        except Exception as exc:  # the writer queue timed out: the database is busy
            failure = exc
            for slot in group:
                slot.error = exc
        finally:
            with self._lock:
                if failure is not None:
                    # The database just failed a statement (unavailable, locked, frozen): the
                    # rows waiting behind it fail with it at once rather than each waiting out
                    # its own timeout in turn, so no request waits longer than one statement.
                    for slot in self._waiting:
                        slot.error = failure
                    group, self._waiting = group + self._waiting, []
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


def _store(group: list[_Slot]) -> BaseException | None:
    """Set each slot's outcome; never raise an Exception (each thread raises its own).
    Return the error when the database itself failed (not a row it refused)."""
    try:
        stored = events_insert_new([slot.row for slot in group])
    except (IntegrityError, DataError) as exc:
        if len(group) == 1:
            group[0].error = exc
            return None
        # A row the database refuses must not fail its neighbours.
        failures = [_store([slot]) for slot in group]
        return next((failure for failure in failures if failure is not None), None)
    except Exception as exc:  # the database is unavailable: the whole group fails (503)
        for slot in group:
            slot.error = exc
        return exc
    for slot in group:
        slot.stored = slot.row[0] in stored
    return None


def _own_copy(error: BaseException) -> BaseException:
    """The group's error for one thread to raise: a shared exception object raised in several
    threads at once would collect all their tracebacks."""
    mine = copy.copy(error)
    mine.__cause__ = error.__cause__ or error
    return mine.with_traceback(None)


group_commit = GroupCommit()
