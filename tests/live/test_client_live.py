"""The producer client against a real gunicorn: events recorded while the service is down,
producers killed with SIGKILL while recording and while delivering; afterwards every event whose
record() returned is stored exactly once, and nothing else is."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from auditlog_client.outbox import Outbox

from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope
from tests.live.conftest import ROOT, LiveServer, server_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

THREADS, PER_THREAD = 4, 313  # 4 processes x 4 threads x 313 = 5,008 events


def producer(outbox, url, token, prefix, log_dir, *, count=0, send=True, close=0.0):
    command = [sys.executable, "-m", "tests.client.producer", str(outbox), url, token, prefix]
    command += ["--threads", str(THREADS), "--count", str(count), "--close", str(close)]
    command += ["--log-dir", str(log_dir)] + (["--send"] if send else [])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'clients/python'}"}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def logged(log_dir: Path, prefix: str) -> set[str]:
    return {line for path in log_dir.glob(f"{prefix}-*.keys") for line in path.read_text().split()}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_nothing_recorded_is_lost_or_doubled_through_an_outage_and_killed_producers(tmp_path):
    source, token = api_key_create(name="crm", scopes={Scope.WRITE})
    outbox_path = tmp_path / "outbox.sqlite3"
    Outbox(outbox_path).close()
    service = LiveServer("client-live", server_env())
    url = service.url  # the service is down: nothing listens there yet

    # Four producers record while the service is down; one is killed mid-way.
    producers = [producer(outbox_path, url, token, f"p{n}", tmp_path, count=PER_THREAD) for n in range(4)]
    wait_for(lambda: len(logged(tmp_path, "p3")) >= 200, 60, "the fourth producer recorded 200 events")
    producers[3].send_signal(signal.SIGKILL)
    producers[3].wait()
    for process in producers[:3]:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    recorded = set().union(*(logged(tmp_path, f"p{n}") for n in range(4)))
    outbox = Outbox(outbox_path)
    assert outbox.stats().pending >= len(recorded) >= 3 * THREADS * PER_THREAD + 200
    assert outbox.stats().delivered == 0

    # The service comes up; a sender is killed while delivering; another one finishes.
    try:
        service.start()
        sender = producer(outbox_path, url, token, "s", tmp_path, close=120)
        wait_for(lambda: outbox.stats().delivered > 0, 60, "a first batch delivered")
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        assert outbox.stats().pending > 0, "the sender was killed after it had delivered everything"
        last = producer(outbox_path, url, token, "f", tmp_path, close=120)
        output, _ = last.communicate(timeout=180)
        assert last.returncode == 0 and "delivered" in output.split(), output
    finally:
        service.stop()

    stored = list(ActionLog.objects.filter(source=source).values_list("idempotency_key", flat=True))
    attempted = {f"p{p}-{t}-{n}" for p in range(4) for t in range(THREADS) for n in range(PER_THREAD)}
    assert len(stored) == len(set(stored)), "an event stored twice"
    assert recorded <= set(stored), f"{len(recorded - set(stored))} recorded events lost"
    assert set(stored) <= attempted, "an event nobody recorded"
    stats = outbox.stats()
    assert (stats.pending, stats.dead_lettered) == (0, 0)
    assert stats.delivered == len(stored)


def test_an_event_the_service_refuses_is_a_dead_letter_not_a_loss(gunicorn, tmp_path):
    """A key reused with another body is the service's 409: kept with its error, counted, shown
    by the console command; the other events of the batch are delivered."""
    from auditlog_client import Client

    _, token = api_key_create(name="crm", scopes={Scope.WRITE})
    outbox = tmp_path / "outbox.sqlite3"
    client = Client(gunicorn.url, token, outbox)
    client.record(action="invoice.delete", actor=1, idempotency_key="reused")
    assert client.flush(timeout=30)
    client.record(action="invoice.update", actor=1, idempotency_key="reused")  # another body
    client.record(action="invoice.update", actor=2, idempotency_key="fine")
    assert client.close(timeout=30)

    env = {**os.environ, "PYTHONPATH": str(ROOT / "clients/python")}
    shown = subprocess.run(
        [sys.executable, "-m", "auditlog_client.cli", "--outbox", str(outbox), "dead-letters"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    [letter] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (letter["key"], letter["status"]) == ("reused", 409) and "conflict" in letter["error"]
    assert Outbox(outbox).stats().as_dict() | {"oldest_pending_age_seconds": None} == {
        "pending": 0,
        "delivered": 2,
        "dead_lettered": 1,
        "retried": 0,
        "oldest_pending_age_seconds": None,
    }
    assert ActionLog.objects.filter(idempotency_key="fine").exists()


def test_a_stalled_network_and_a_restarted_service_lose_and_double_nothing(gunicorn, tmp_path):
    """The client sends through a proxy that goes silent mid-delivery (the batch may be stored,
    its answer never comes: the read times out and the batch is sent again), then the service
    restarts; four threads record throughout. Every recorded event is stored once."""
    from auditlog_client import Client

    from tests.live.faults import TcpProxy

    source, token = api_key_create(name="crm", scopes={Scope.WRITE})
    proxy = TcpProxy("127.0.0.1", gunicorn.port)
    client = Client(
        f"http://127.0.0.1:{proxy.port}",
        token,
        tmp_path / "outbox.sqlite3",
        connect_timeout=1.0,
        read_timeout=1.0,
        max_backoff=0.5,
        batch_size=200,
    )
    recorded = []

    def record(thread: int):
        for n in range(750):
            recorded.append(
                client.record(action="document.view", actor=thread, idempotency_key=f"t{thread}-{n}")
            )
            if n % 50 == 0:
                time.sleep(0.05)

    threads = [threading.Thread(target=record, args=(t,)) for t in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: client.stats().delivered > 0, 30, "a first delivery")
        with proxy.frozen():
            time.sleep(3)  # answers held past the read timeout; batches resent after
        gunicorn.stop()
        time.sleep(1)
        gunicorn.start()
        for thread in threads:
            thread.join()
        assert client.flush(timeout=90)
        retried = client.stats().retried
        client.close()
    finally:
        proxy.close()

    stored = list(ActionLog.objects.filter(source=source).values_list("idempotency_key", flat=True))
    assert len(stored) == len(set(stored)) == len(recorded) == 3000
    assert set(stored) == set(recorded)
    assert retried > 0, "nothing was sent twice: the stall and the restart tested nothing"
