"""Client: record() validates, keys and stores an event in the outbox and returns; a sender
thread delivers the outbox in batches to POST /api/v1/events/batch."""

import json
import logging
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from auditlog_client.outbox import Outbox, OutboxFull, Stats
from auditlog_client.transport import Transport, TransportError
from auditlog_client.validation import event_check, rules

logger = logging.getLogger("auditlog_client")

_UNSET = object()


class Client:
    """One per process is enough (it is thread-safe); many processes may share one outbox.

    url, token: the service and a key with the `write` scope.
    outbox: the SQLite file events are kept in until the service has them.
    durable: "process" (a committed event survives any process's death) or "power" (also a
        power loss; each record() waits for the disk).
    max_pending: the outbox's bound; record() past it waits up to full_timeout for the sender
        to make room, then raises OutboxFull. Nothing is ever dropped.
    send: start the sender thread (False: this process only records; another one sends).
    """

    def __init__(
        self,
        url: str,
        token: str,
        outbox: str,
        *,
        durable: str = "process",
        max_pending: int = 1_000_000,
        full_timeout: float = 5.0,
        batch_size: int = 1000,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_backoff: float = 30.0,
        poll_interval: float = 0.5,
        send: bool = True,
    ):
        self.outbox = Outbox(outbox, durable=durable)
        self.transport = Transport(url, token, connect_timeout=connect_timeout, read_timeout=read_timeout)
        self.max_pending, self.full_timeout = max_pending, full_timeout
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._room = threading.Condition()
        self.sender = Sender(
            self.outbox,
            self.transport,
            batch_size=batch_size,
            max_backoff=max_backoff,
            poll_interval=poll_interval,
            on_progress=self._made_room,
        )
        self._sender: threading.Thread | None = None
        if send:
            self.start()

    # --- recording -----------------------------------------------------------------------

    def record(
        self,
        *,
        action: str,
        actor: dict | str | int,
        target: dict | None = None,
        outcome: str = "success",
        metadata: dict | None = None,
        occurred_at: datetime | str | None = None,
        context: dict | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Store the event durably and return its idempotency key; the sender delivers it.

        Raises EventInvalid (the service would refuse it: nothing stored) or OutboxFull.
        occurred_at defaults to now (the moment of the call, not of delivery).
        """
        key, body = event_build(
            action=action,
            actor=actor,
            target=target,
            outcome=outcome,
            metadata=metadata,
            occurred_at=occurred_at,
            context=context,
            idempotency_key=idempotency_key,
        )
        deadline = time.monotonic() + self.full_timeout
        while not self.outbox.add(key, body, max_pending=self.max_pending):
            self._wake.set()
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutboxFull(
                    f"the outbox holds {self.max_pending:,} events; none delivered in {self.full_timeout} s"
                )
            with self._room:
                self._room.wait(min(left, self.poll_interval))
        self._wake.set()
        return key

    # --- delivering ----------------------------------------------------------------------

    def start(self) -> None:
        if self._sender is None or not self._sender.is_alive():
            self._stop.clear()
            self._sender = threading.Thread(
                target=self.sender.run,
                args=(self._stop, self._wake),
                name="auditlog-client-sender",
                daemon=True,
            )
            self._sender.start()

    def send_once(self) -> float:
        return self.sender.send_once()

    # --- waiting and stopping ------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """True once every event recorded so far (in any process) is delivered or dead-lettered;
        False at the timeout."""
        last = self.outbox.last_id()
        deadline = time.monotonic() + timeout
        self.start()
        while self.outbox.pending_through(last):
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Try to deliver for up to `timeout`, then stop the sender. What is not delivered stays in
        the outbox for the next process. True when everything was delivered."""
        flushed = self.flush(timeout) if timeout > 0 else False
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(self.transport.read_timeout + self.transport.connect_timeout + 1)
        self.transport.close()
        self.outbox.close()
        return flushed

    def _made_room(self) -> None:
        with self._room:
            self._room.notify_all()

    def stats(self) -> Stats:
        return self.outbox.stats()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Sender:
    """Delivers an outbox (this package's SQLite one, or the Django integration's table): lease a
    batch, post it, settle each event by its result. Shared by every sender there is."""

    def __init__(
        self,
        store,
        transport: Transport,
        *,
        batch_size: int = 1000,
        max_backoff: float = 30.0,
        poll_interval: float = 0.5,
        on_progress=lambda: None,
    ):
        limits = rules()["limits"]
        if not 1 <= batch_size <= limits["batch_events"]:
            raise ValueError(f"batch_size must be 1 to {limits['batch_events']}")
        self.store, self.transport = store, transport
        self.batch_size, self.max_bytes = batch_size, limits["batch_bytes"] - 1024
        self.lease = transport.connect_timeout + transport.read_timeout + 30
        self.max_backoff, self.poll_interval = max_backoff, poll_interval
        self.on_progress = on_progress
        self._failures = 0

    def run(self, stop: threading.Event, wake: threading.Event) -> None:
        """Send until `stop` is set; `wake` cuts a wait short (something was recorded)."""
        self.store.release_dead_owners()
        checked = time.monotonic()
        while not stop.is_set():
            try:
                if time.monotonic() - checked > self.lease / 4:
                    self.store.release_dead_owners()
                    checked = time.monotonic()
                delay = self.send_once()
            except Exception:  # noqa: BLE001 - the sender never dies; the outbox keeps the events
                logger.exception("auditlog client: sending failed; retrying")
                delay = self._backoff()
            if delay:
                wake.wait(delay)
                wake.clear()

    def send_once(self) -> float:
        """Deliver one batch; the seconds to wait before the next (0: go on at once)."""
        items = self.store.claim(self.batch_size, self.lease, self.max_bytes)
        if not items:
            return self.poll_interval
        try:
            results = self.transport.send_batch([item.body for item in items])
        except TransportError as exc:
            delay = max(exc.retry_after or 0, self._backoff())
            self.store.retry_later(items, delay, str(exc))
            logger.warning("auditlog client: %s; %d events kept, retrying in %.1f s", exc, len(items), delay)
            return delay
        self._failures = 0
        done, dead, again = [], [], []
        for item, result in zip(items, results, strict=True):
            status = result.get("status")
            if status in (200, 201):
                done.append(item.id)
            elif status is not None and 400 <= status < 500:
                dead.append((item, status, json.dumps(result.get("error"), ensure_ascii=False)))
            else:
                again.append(item)
        self.store.delivered(done)
        self.store.dead(dead)
        if dead:
            logger.error("auditlog client: %d events refused for good; kept as dead letters", len(dead))
        if again:
            self.store.retry_later(again, self._backoff(), "no result")
        self.on_progress()
        return 0

    def _backoff(self) -> float:
        """Full jitter: a random wait up to 0.5 s x 2^failures, at most max_backoff."""
        self._failures += 1
        return random.uniform(0.05, min(self.max_backoff, 0.5 * 2 ** min(self._failures, 16)))


def event_build(
    *,
    action: str,
    actor: dict | str | int,
    target: dict | None = None,
    outcome: str = "success",
    metadata: dict | None = None,
    occurred_at: datetime | str | None = None,
    context: dict | None = None,
    idempotency_key: str | None = None,
) -> tuple[str, str]:
    """The event's key and JSON body, checked by the service's rules (raises EventInvalid)."""
    event: dict[str, Any] = {
        "action": action,
        "actor": actor if isinstance(actor, dict) else {"id": actor},
        "outcome": outcome,
        "occurred_at": _rfc3339(occurred_at if occurred_at is not None else datetime.now(UTC)),
    }
    for name, value in (("target", target), ("metadata", metadata), ("context", context)):
        if value is not None:
            event[name] = value
    event["idempotency_key"] = key = idempotency_key or str(uuid.uuid4())
    event_check(event)
    return key, json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _rfc3339(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


__all__ = ["Client", "OutboxFull", "Sender", "event_build"]
