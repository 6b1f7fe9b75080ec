"""The outbox: a SQLite file that events are written to before record() returns, and that
senders (in this process or any other sharing the file) deliver from.

SQLite the way the service uses it: WAL (readers never block the writer), a busy timeout (a
writer waits for another instead of failing with "database is locked"), one connection per
thread (a connection is never shared), and BEGIN IMMEDIATE for every write (the write lock is
taken at the start, so a transaction never fails to upgrade from reading to writing).

Durability: with synchronous=NORMAL (the default, `durable="process"`) a committed event
survives the death of any process; a power loss or an OS crash may lose the last commits. With
`durable="power"` (synchronous=FULL) every commit is on disk before record() returns.

A sender claims a batch by leasing it (lease_until, lease_owner); a sender that dies leaves its
lease to expire, or, on the same host, to be taken back at once once its process is gone. The
service's idempotency keys make a second delivery of the same event a replay, never a copy.
"""

import contextlib
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0,
    lease_owner TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (not_before, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('pending', 0), ('delivered', 0), ('dead_lettered', 0), ('retried', 0);
"""


def lease_owner() -> str:
    """Who holds a lease: this host and process, read at each claim (a process forked after this
    module was imported is its own owner, not its parent)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class OutboxFull(RuntimeError):
    """The outbox holds max_pending events and none was delivered within the wait."""


@dataclass(frozen=True)
class Item:
    id: int
    key: str
    body: str
    attempts: int


@dataclass(frozen=True)
class Stats:
    pending: int
    delivered: int
    dead_lettered: int
    oldest_pending_age: float | None  # seconds, None when nothing is pending
    retried: int = 0  # sends of an event that got no answer, or a 5xx (each will be sent again)

    def as_dict(self) -> dict:
        return {
            "pending": self.pending,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
            "oldest_pending_age_seconds": None
            if self.oldest_pending_age is None
            else round(self.oldest_pending_age, 3),
        }


class Outbox:
    def __init__(self, path: str, *, durable: str = "process", busy_timeout: float = 30.0):
        if durable not in ("process", "power"):
            raise ValueError('durable must be "process" or "power"')
        self.path = os.fspath(path)
        self.synchronous = "NORMAL" if durable == "process" else "FULL"
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self.write() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)

    # --- connections ---------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork: a child never uses its parent's)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True
            )
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            local.db, local.pid = db, os.getpid()
            with self._all_lock:
                self._all.append(db)
        return local.db

    def write(self):
        return _Immediate(self.db())

    def close(self) -> None:
        with self._all_lock:
            for db in self._all:
                with contextlib.suppress(sqlite3.ProgrammingError):  # another thread's
                    db.close()
            self._all.clear()
        self._local = threading.local()

    # --- recording -----------------------------------------------------------------------

    def add(self, key: str, body: str, *, max_pending: int) -> bool:
        """Store the event; False when the outbox is full (nothing written)."""
        with self.write() as db:
            (pending,) = db.execute("SELECT value FROM counters WHERE name = 'pending'").fetchone()
            if pending >= max_pending:
                return False
            db.execute(
                "INSERT INTO outbox (key, body, recorded_at) VALUES (?, ?, ?)", (key, body, time.time())
            )
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'pending'")
        return True

    # --- sending -------------------------------------------------------------------------

    def claim(self, limit: int, lease: float, max_bytes: int) -> list[Item]:
        """Lease up to `limit` due events (oldest first, at most `max_bytes` of bodies): one
        UPDATE ... RETURNING, under the write lock."""
        now = time.time()
        with self.write() as db:
            rows = db.execute(
                "UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id IN"
                " (SELECT id FROM outbox WHERE not_before <= ? AND lease_until < ? ORDER BY id LIMIT ?)"
                " RETURNING id, key, body, attempts",
                (now + lease, lease_owner(), now, now, limit),
            ).fetchall()
            rows.sort()
            items, size = [], 0
            for row in rows:
                size += len(row[2]) + 1
                if items and size > max_bytes:
                    break
                items.append(Item(*row))
            if len(items) < len(rows):  # over the batch's bytes: the rest waits for the next batch
                db.executemany(
                    "UPDATE outbox SET lease_until = 0, lease_owner = '' WHERE id = ?",
                    [(row[0],) for row in rows[len(items) :]],
                )
        return items

    def delivered(self, ids: list[int]) -> None:
        if not ids:
            return
        with self.write() as db:
            gone = _delete(db, ids)
            db.execute("UPDATE counters SET value = value - ? WHERE name = 'pending'", (gone,))
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'delivered'", (gone,))

    def dead(self, failures: list[tuple[Item, int, str]]) -> None:
        """Move items the service refused for good (a 4xx of their own) to the dead letters."""
        if not failures:
            return
        now = time.time()
        with self.write() as db:
            for item, status, error in failures:
                db.execute(
                    "INSERT OR REPLACE INTO dead_letters (key, body, recorded_at, failed_at, status, error)"
                    " SELECT key, body, recorded_at, ?, ?, ? FROM outbox WHERE id = ?",
                    (now, status, error, item.id),
                )
            gone = _delete(db, [item.id for item, _, _ in failures])
            db.execute("UPDATE counters SET value = value - ? WHERE name = 'pending'", (gone,))
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'dead_lettered'", (gone,))

    def retry_later(self, items: list[Item], delay: float, error: str) -> None:
        """Release the lease; the items are due again after `delay` seconds."""
        with self.write() as db:
            db.executemany(
                "UPDATE outbox SET lease_until = 0, lease_owner = '', attempts = attempts + 1,"
                " not_before = ?, last_error = ? WHERE id = ?",
                [(time.time() + delay, error[:500], item.id) for item in items],
            )
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'retried'", (len(items),))

    def release_dead_owners(self) -> int:
        """Take back at once the leases of senders on this host whose process is gone."""
        now = time.time()
        owners = self.db().execute(
            "SELECT DISTINCT lease_owner FROM outbox WHERE lease_until >= ? AND lease_owner != ''", (now,)
        )
        dead = dead_owners(owner for (owner,) in owners)
        released = 0
        for owner in dead:
            with self.write() as db:
                released += db.execute(
                    "UPDATE outbox SET lease_until = 0, lease_owner = '' WHERE lease_owner = ?", (owner,)
                ).rowcount
        return released

    # --- looking -------------------------------------------------------------------------

    def stats(self) -> Stats:
        db = self.db()
        counters = dict(db.execute("SELECT name, value FROM counters"))
        (oldest,) = db.execute("SELECT min(recorded_at) FROM outbox").fetchone()
        return Stats(
            counters["pending"],
            counters["delivered"],
            counters["dead_lettered"],
            None if oldest is None else max(time.time() - oldest, 0.0),
            counters.get("retried", 0),
        )

    def last_id(self) -> int:
        (last,) = self.db().execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        return last

    def pending_through(self, last_id: int) -> int:
        (count,) = self.db().execute("SELECT count(*) FROM outbox WHERE id <= ?", (last_id,)).fetchone()
        return count

    def dead_letters(self, limit: int = 100) -> list[dict]:
        rows = self.db().execute(
            "SELECT key, status, error, failed_at, body FROM dead_letters ORDER BY id LIMIT ?", (limit,)
        )
        return [dict(zip(("key", "status", "error", "failed_at", "body"), row, strict=True)) for row in rows]

    def retry_dead(self, keys: list[str] | None = None) -> int:
        """Move dead letters (all, or those of `keys`) back to the outbox, due now."""
        with self.write() as db:
            where, args = (
                ("", ()) if keys is None else (f" WHERE key IN ({','.join('?' * len(keys))})", tuple(keys))
            )
            moved = db.execute(
                "INSERT OR IGNORE INTO outbox (key, body, recorded_at)"
                " SELECT key, body, recorded_at FROM dead_letters" + where,
                args,
            ).rowcount
            db.execute("DELETE FROM dead_letters" + where, args)
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'pending'", (moved,))
            db.execute("UPDATE counters SET value = value - ? WHERE name = 'dead_lettered'", (moved,))
        return moved


class _Immediate:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, exc, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _delete(db: sqlite3.Connection, ids: list[int]) -> int:
    gone = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        gone += db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk).rowcount
    return gone


def dead_owners(owners) -> list[str]:
    """Of lease owners, those of this host whose process is gone (another host's are left to
    expire: their processes cannot be seen from here)."""
    host = socket.gethostname()
    return [owner for owner in set(owners) if owner.rpartition(":")[0] == host and not _owner_alive(owner)]


def _owner_alive(owner: str) -> bool:
    pid = int(owner.rpartition(":")[2])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
