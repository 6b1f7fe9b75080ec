"""A deadline on reading a request body from the client's socket, under gunicorn.

gunicorn's body reader loops on recv() until it has what was asked for, so a per-recv socket
timeout does not bound a client that trickles a byte a second. One thread per process watches
the sockets being read and, when one's deadline passes, shuts its reading side: the blocked
recv() returns end-of-file at once, the read ends short, and the request answers 408.
"""

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from auditlog.db.request_guard import request_guard

TICK = 0.1  # seconds: how late past its deadline a read may end


class _Watchdog:
    """Ticks every TICK seconds whether or not a read is watched: ten wake-ups a second cost
    less than waking it for each request (a read is watched on every POST)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[float, socket.socket]] = {}
        self._expired: set[int] = set()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        token = id(sock)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="read-deadline", daemon=True)
                self._thread.start()
            self._watched[token] = (deadline, sock)
        return token

    def unwatch(self, token: int) -> bool:
        """Stop watching; True if the deadline passed (the socket's reading side is shut)."""
        with self._lock:
            self._watched.pop(token, None)
            if token in self._expired:
                self._expired.discard(token)
                return True
            return False

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self._lock:
                for token, (deadline, sock) in list(self._watched.items()):
                    if now >= deadline:
                        del self._watched[token]
                        self._expired.add(token)
                        # Under the lock, so the reader is still inside read_deadline() and
                        # the socket still open. socket.socket's own shutdown, not TLS's.
                        with suppress(OSError):
                            socket.socket.shutdown(sock, socket.SHUT_RD)


_watchdog = _Watchdog()


@contextmanager
def read_deadline(sock: socket.socket | None, seconds: float) -> Iterator[Callable[[], bool]]:
    """Reads from `sock` inside the block end (as end-of-file) once `seconds` have passed.

    Yields a function that tells, after the block, whether the deadline cut the read short.
    Without a socket (the test client, another server), nothing is watched.
    """
    if sock is None:
        yield lambda: False
        return
    token = _watchdog.watch(sock, time.monotonic() + seconds)
    expired = None
    try:
        yield lambda: bool(expired)
    finally:
        expired = _watchdog.unwatch(token)


def read_in_time(request, seconds: float, read: Callable[[], bytes]) -> bytes | None:
    """Run `read` (it reads the request's body) within `seconds`; None if the deadline cut it
    short. The time it took was the client's, so it does not count against the request's
    database budget."""
    started = time.monotonic()
    with read_deadline(request.META.get("gunicorn.socket"), seconds) as expired:
        try:
            body = read()
        except OSError:  # includes the server's "no more data" from a client gone mid-body
            body = b""
    request_guard.extend(time.monotonic() - started)
    return None if expired() else body


def _forget_after_fork() -> None:
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_forget_after_fork)
