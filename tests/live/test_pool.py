"""DATABASE_POOL=true with a small pool and more concurrent requests than connections."""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from auditlog.http import errors
from auditlog.models import ActionLog
from tests.conftest import BATCH_URL, EVENTS_URL, make_event, requires_postgres, without_request_id
from tests.live import pg
from tests.live.load import Client
from tests.live.test_concurrency import write_summary

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), requires_postgres]

POOL = {
    "DATABASE_POOL": "true",
    "DATABASE_POOL_MIN_SIZE": "1",
    "DATABASE_POOL_MAX_SIZE": "2",
    "DATABASE_POOL_TIMEOUT": "1",
    "WEB_CONCURRENCY": "1",
    "GUNICORN_THREADS": "8",
}
UNAVAILABLE = {"error": {"code": errors.SERVICE_UNAVAILABLE, "message": errors.MSG_UNAVAILABLE}}


def slow_upload(port: int, token: str, key: str, seconds: float, pieces=10) -> int:
    """POST one event, trickling its body over `seconds`; return the status."""
    payload = json.dumps(make_event(idempotency_key=key)).encode()
    head = (
        f"POST {EVENTS_URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    step = -(-len(payload) // pieces)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode())
        for start in range(0, len(payload), step):
            sock.sendall(payload[start : start + step])
            time.sleep(seconds / pieces)
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def test_slow_uploads_do_not_hold_pool_connections(gunicorn_factory, writer_key):
    """5 clients trickle bodies for 3 s through a pool of 2: fast producers are not starved."""
    _, token = writer_key
    server = gunicorn_factory(**POOL)

    with ThreadPoolExecutor(max_workers=5) as pool:
        slow = [pool.submit(slow_upload, server.port, token, f"slow-{i}", 3.0) for i in range(5)]
        time.sleep(0.5)  # the slow requests are inside the service now, reading their bodies
        started = time.monotonic()
        fast_client = Client(server.port, token)
        fast = [fast_client.send("POST", EVENTS_URL, make_event())[0] for _ in range(40)]
        fast_seconds = time.monotonic() - started
        slow_statuses = [future.result() for future in slow]

    write_summary(
        "pool-slow-uploads", {"fast_statuses": sorted(set(fast)), "fast_seconds": round(fast_seconds, 2)}
    )
    assert fast == [201] * 40
    assert fast_seconds < 2.5  # done while the slow uploads were still trickling
    assert slow_statuses == [201] * 5
    assert ActionLog.objects.count() == 45


def post_one(port, token, number):
    """Even numbers post one event, odd numbers a batch of 20; all idempotency-keyed."""
    client = Client(port, token)
    started = time.monotonic()
    if number % 2:
        keys = {f"b{number}-{i}" for i in range(20)}
        status, body = client.send(
            "POST", BATCH_URL, {"events": [make_event(idempotency_key=k) for k in keys]}
        )
    else:
        keys = {f"s{number}"}
        status, body = client.send("POST", EVENTS_URL, make_event(idempotency_key=f"s{number}"))
    client.close()
    return {
        "keys": keys,
        "status": status,
        "body": body,
        "seconds": time.monotonic() - started,
        **client.last_headers,
    }


def test_exhausted_pool_answers_503_after_the_timeout_and_writes_nothing_half(gunicorn_factory, writer_key):
    """A lock on the events table pins both pooled connections; the other requests must not hang."""
    _, token = writer_key
    server = gunicorn_factory(**POOL)
    assert server.request("GET", "/readyz")[0] == 200

    with pg.admin_connect(dbname=connection.settings_dict["NAME"]) as locker:
        locker.autocommit = False
        locker.execute("LOCK TABLE auditlog_actionlog IN SHARE MODE")  # blocks inserts, not reads
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(post_one, server.port, token, n) for n in range(8)]
            time.sleep(3.0)
            locker.rollback()  # release: the pinned requests complete
            outcomes = [future.result() for future in futures]

    unavailable = [o for o in outcomes if o["status"] == 503]
    write_summary(
        "pool-exhaustion",
        {
            "statuses": sorted(o["status"] for o in outcomes),
            "seconds_to_503": sorted(round(o["seconds"], 2) for o in unavailable),
        },
    )
    assert len(unavailable) >= 4
    assert {o["status"] for o in outcomes} <= {201, 200, 503}
    for outcome in unavailable:
        assert without_request_id(outcome["body"]) == UNAVAILABLE
        assert outcome["Retry-After"] == "1"
        assert 0.9 <= outcome["seconds"] < 2.5  # after DATABASE_POOL_TIMEOUT, not after the lock
    stored_keys = set(ActionLog.objects.values_list("idempotency_key", flat=True))
    for outcome in outcomes:  # all of a request's events, or none of them
        if outcome["status"] == 503:
            assert not outcome["keys"] & stored_keys
        else:
            assert outcome["keys"] <= stored_keys
    assert "Traceback" not in server.log()
