"""Leaks and shutdown: file descriptors over 10,000 requests, SIGTERM during load."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from auditlog.models import ActionLog
from tests.conftest import EVENTS_URL, make_event
from tests.live import load
from tests.live.load import Client
from tests.live.test_concurrency import stored, write_summary

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def open_fds(pids: list[int]) -> dict[int, int]:
    return {pid: len(os.listdir(f"/proc/{pid}/fd")) for pid in pids}


def mixed_requests(port: int, token: str, client_number: int, count: int) -> list[int]:
    """Successes and every error path: 201/200, 400, 401, 404, 409."""
    client, statuses = Client(port, token), []
    stranger = Client(port, "al_00000000_wrong")
    for n in range(count):
        key = f"fd-{client_number}-{n}"
        match n % 8:
            case 0 | 1 | 2:
                statuses.append(client.send("POST", EVENTS_URL, make_event(idempotency_key=key))[0])
            case 3:
                statuses.append(client.send("POST", EVENTS_URL, make_event(action="Not Valid"))[0])
            case 4:
                statuses.append(stranger.send("POST", EVENTS_URL, make_event())[0])
            case 5:
                statuses.append(client.send("GET", f"{EVENTS_URL}?limit=5")[0])
            case 6:
                statuses.append(client.send("GET", "/api/v1/nothing")[0])
            case 7:
                statuses.append(
                    client.send(
                        "POST",
                        EVENTS_URL,
                        make_event(idempotency_key=f"fd-{client_number}-0", outcome="failure"),
                    )[0]
                )
    client.close()
    stranger.close()
    return statuses


def run_mixed(port, token, clients, per_client) -> list[int]:
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(mixed_requests, port, token, c, per_client) for c in range(clients)]
        return [status for future in futures for status in future.result()]


def test_worker_file_descriptors_do_not_grow_over_10000_requests(gunicorn, writer_key):
    """Flat from 5,000 to 10,000 requests (a leak per request would add thousands), and never
    above the warm count plus one database connection's files per gunicorn thread (a thread
    the warm-up did not reach may still open its connection later)."""
    _, token = writer_key
    workers = gunicorn.worker_pids()
    threads = int(gunicorn.env["GUNICORN_THREADS"])
    # db, -wal, -shm and the writer queue's lock file / one socket
    per_connection = 4 if connection.vendor == "sqlite" else 1
    warm = run_mixed(gunicorn.port, token, clients=16, per_client=40)
    time.sleep(0.5)
    before = open_fds(workers)

    statuses = run_mixed(gunicorn.port, token, clients=16, per_client=313)
    time.sleep(0.5)
    halfway = open_fds(workers)
    statuses += run_mixed(gunicorn.port, token, clients=16, per_client=312)
    time.sleep(0.5)
    after = open_fds(workers)

    write_summary("fds", {"requests": len(statuses), "before": before, "halfway": halfway, "after": after})
    assert len(statuses) == 10_000
    assert set(warm) | set(statuses) <= {200, 201, 400, 401, 404, 409}
    assert gunicorn.worker_pids() == workers  # no worker was replaced
    for pid in workers:
        assert after[pid] <= halfway[pid] + 1, (halfway, after)
        assert after[pid] <= before[pid] + threads * per_connection, (before, after)


def test_sigterm_during_load_keeps_every_acknowledged_event(gunicorn, writer_key):
    key, token = writer_key
    plan = load.Plan(clients=30, ops=1000, stop=threading.Event())
    runner = threading.Thread(target=lambda: setattr(plan, "results", load.run(plan, gunicorn.port, token)))
    runner.start()
    deadline = time.monotonic() + 30
    while len(plan.sent_keys) < 1500 and time.monotonic() < deadline:
        time.sleep(0.05)

    gunicorn.process.send_signal(signal.SIGTERM)
    exit_code = gunicorn.process.wait(60)
    plan.stop.set()
    runner.join(120)

    results = plan.results
    acked = load.acked(results)
    rows = stored(key)
    write_summary(
        "sigterm",
        {
            "exit_code": exit_code,
            "statuses": load.status_counts(results),
            "events_acked": len(acked),
            "rows_stored": len(rows),
            "stored_not_acked": len(rows.keys() - acked.keys()),
        },
    )
    assert exit_code == 0
    assert {r.status for r in results} <= {200, 201, None}  # answered, or refused once stopped
    assert acked.items() <= rows.items()  # every acknowledged event is stored
    assert rows.keys() == acked.keys()  # in-flight requests finished and were answered
    assert ActionLog.objects.count() == len(rows)
    assert "Traceback" not in gunicorn.log()
