"""The client without a service: record() stores before it returns, refuses what the service
would, never drops when full, and is safe from many threads; the console command."""

import io
import json
import threading
import time
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from auditlog_client import Client, EventInvalid, OutboxFull
from auditlog_client.cli import main as cli
from auditlog_client.outbox import Outbox

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers


@pytest.fixture
def outbox_path(tmp_path):
    return tmp_path / "outbox.sqlite3"


def test_a_recorded_event_is_in_the_outbox_when_record_returns(outbox_path):
    client = Client(NOWHERE, "token", outbox_path, send=False)
    key = client.record(
        action="invoice.delete", actor={"id": 42, "type": "user"}, target={"type": "invoice", "id": 7}
    )
    del client  # no close: what a killed process leaves

    outbox = Outbox(outbox_path)
    [row] = outbox.db().execute("SELECT key, body FROM outbox").fetchall()
    body = json.loads(row[1])
    assert row[0] == key == body["idempotency_key"]
    assert body["action"] == "invoice.delete" and body["occurred_at"].endswith("Z")
    assert outbox.stats().pending == 1


def test_an_invalid_event_is_refused_and_nothing_is_stored(outbox_path):
    client = Client(NOWHERE, "token", outbox_path, send=False)
    with pytest.raises(EventInvalid) as refused:
        client.record(action="Invoice Delete", actor={"id": ""}, context={"ip": "fe80::1%eth0"})

    assert set(refused.value.fields) == {"action", "actor.id", "context.ip"}
    assert client.stats().pending == 0


def test_a_full_outbox_waits_then_raises_and_drops_nothing(outbox_path):
    client = Client(NOWHERE, "token", outbox_path, send=False, max_pending=3, full_timeout=0.3)
    for n in range(3):
        client.record(action="a", actor=n)
    started = time.monotonic()
    with pytest.raises(OutboxFull):
        client.record(action="a", actor=4)

    assert time.monotonic() - started >= 0.3
    assert client.stats().pending == 3


def test_many_threads_record_at_once_without_a_lock_error(outbox_path):
    client = Client(NOWHERE, "token", outbox_path, send=False)
    errors = []

    def record():
        try:
            for n in range(200):
                client.record(action="document.view", actor=n)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert client.stats().pending == 1600
    (mode,) = Outbox(outbox_path).db().execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


def test_flush_gives_up_at_its_timeout_and_keeps_the_events(outbox_path):
    client = Client(NOWHERE, "token", outbox_path, connect_timeout=0.5, max_backoff=0.2)
    client.record(action="a", actor=1)

    assert client.close(timeout=1.0) is False
    assert Outbox(outbox_path).stats().pending == 1


def run(*args) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli(list(args))
    return status, out.getvalue()


def test_the_console_command_shows_and_retries_dead_letters(outbox_path):
    client = Client(NOWHERE, "token", outbox_path, send=False)
    client.record(action="a", actor=1, idempotency_key="k-1")
    outbox = Outbox(outbox_path)
    [item] = outbox.claim(10, 60, 10**6)
    outbox.dead([(item, 409, '{"code": "conflict"}')])

    status, out = run("--outbox", str(outbox_path), "status")
    assert status == 0 and json.loads(out) | {"oldest_pending_age_seconds": None} == {
        "pending": 0,
        "delivered": 0,
        "dead_lettered": 1,
        "retried": 0,
        "oldest_pending_age_seconds": None,
    }
    _, out = run("--outbox", str(outbox_path), "dead-letters")
    assert json.loads(out)["key"] == "k-1" and json.loads(out)["status"] == 409
    _, out = run("--outbox", str(outbox_path), "retry", "k-1")
    assert json.loads(out) == {"moved_back": 1}
    assert outbox.stats().pending == 1 and outbox.stats().dead_lettered == 0


class _Unavailable(BaseHTTPRequestHandler):
    """A service that answers every batch 503 with Retry-After: 3, as the real one does when its
    database is unreachable."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"error": {"code": "service_unavailable", "message": "Try again."}}'
        self.send_response(503)
        self.send_header("Retry-After", "3")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_503_keeps_the_batch_and_waits_at_least_its_retry_after(outbox_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(
            f"http://127.0.0.1:{server.server_port}", "token", outbox_path, send=False, max_backoff=0.5
        )
        client.record(action="a", actor=1)
        before = time.time()
        delay = client.send_once()
    finally:
        server.shutdown()

    assert delay >= 3
    [(not_before, attempts, error)] = (
        Outbox(outbox_path).db().execute("SELECT not_before, attempts, last_error FROM outbox")
    )
    assert not_before >= before + 3 and attempts == 1 and "503" in error
    assert client.stats().pending == 1 and client.stats().retried == 1
