"""Never hang: every request is answered within a bound, whatever the database does.

Each fault is held while producers (POSTs with idempotency keys, a 503 retried with the same
key), readers (GET /api/v1/events) and a load balancer (GET /readyz) keep asking a real
gunicorn. Every answer must come within ANSWER_BOUND seconds, as JSON, 2xx or 503 with
Retry-After; the service must answer again soon after the fault ends, with no restart; and
every acknowledged event is stored exactly once. The service runs with its default bounds.
FAULT_HOLD_SECONDS (env AUDITLOG_FAULT_HOLD) is 12 s in the suite; 35 s checks the issue's figure.
"""

import http.client
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from django.db import connection

from auditlog.http import errors
from auditlog.models import ActionLog
from tests.conftest import EVENTS_URL, make_event, requires_postgres, requires_sqlite
from tests.live import faults, pg
from tests.live.conftest import database_url
from tests.live.test_concurrency import write_summary

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

FAULT_HOLD_SECONDS = float(os.environ.get("AUDITLOG_FAULT_HOLD", "12"))
ANSWER_BOUND = 10.0  # seconds: the bound on every answer
RECOVERY_BOUND = 15.0  # seconds from the end of the fault to a 2xx POST and a 200 /readyz
PRODUCERS, READERS = 3, 2


@dataclass
class Answer:
    kind: str  # post, get, readyz
    started: float
    seconds: float
    status: int | None  # None: no answer (connection failed or timed out)
    retry_after: str | None = None
    body: object = None
    key: str | None = None


class Probes:
    """Clients that keep asking until stopped; each request on a fresh connection."""

    def __init__(self, port: int, token: str, producers: int = PRODUCERS, readers: int = READERS):
        self.port, self.token = port, token
        self.answers: list[Answer] = []
        self.acked: dict[str, str] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._produce, args=(n,)) for n in range(producers)]
        self._threads += [threading.Thread(target=self._read) for _ in range(readers)]
        self._threads += [threading.Thread(target=self._probe_ready)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self._threads), "a probe did not finish"

    def _ask(self, kind, method, path, body=None, key=None) -> Answer:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=ANSWER_BOUND * 3)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        answer = Answer(kind, started, 0.0, None, key=key)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
            raw = response.read()
            answer.status, answer.retry_after = response.status, response.getheader("Retry-After")
            answer.body = json.loads(raw) if raw else None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            answer.body = repr(exc)
        finally:
            conn.close()
        answer.seconds = time.monotonic() - started
        with self._lock:
            self.answers.append(answer)
        return answer

    def _produce(self, number: int):
        sent = 0
        while not self.stop.is_set():
            key = f"p{number}-{sent}"
            sent += 1
            give_up = time.monotonic() + 120  # a key once sent is retried until acknowledged
            while time.monotonic() < give_up:
                answer = self._ask("post", "POST", EVENTS_URL, make_event(idempotency_key=key), key)
                if answer.status in (200, 201):
                    self.acked[key] = answer.body["id"]
                    break
                time.sleep(0.2)
            time.sleep(0.05)

    def _read(self):
        while not self.stop.is_set():
            self._ask("get", "GET", f"{EVENTS_URL}?limit=10")
            time.sleep(0.1)

    def _probe_ready(self):
        while not self.stop.is_set():
            self._ask("readyz", "GET", "/readyz")
            time.sleep(0.25)

    def first_success_after(self, kind: str, moment: float) -> float | None:
        with self._lock:
            times = [a.started + a.seconds for a in self.answers if a.kind == kind and a.started >= moment]
            ok = [
                a.started + a.seconds
                for a in self.answers
                if a.kind == kind and a.started >= moment and a.status in (200, 201)
            ]
        return min(ok) if ok and times else None


def hold_fault(probes: Probes, fault) -> tuple[float, float, float]:
    """Run the fault for FAULT_HOLD_SECONDS under the probes; return (start, end, recovery s)."""
    time.sleep(2.0)
    with fault:
        started = time.monotonic()
        time.sleep(FAULT_HOLD_SECONDS)
        ended = time.monotonic()
    deadline = ended + 30
    while time.monotonic() < deadline:
        post, ready = probes.first_success_after("post", ended), probes.first_success_after("readyz", ended)
        if post and ready:
            break
        time.sleep(0.1)
    recovered = max(post or float("inf"), ready or float("inf")) - ended
    time.sleep(2.0)
    return started, ended, recovered


def check(name: str, probes: Probes, source, started, ended, recovered, *, ready_fails: bool) -> dict:
    answers = probes.answers
    during = [a for a in answers if a.started >= started and a.started + a.seconds <= ended]
    summary = {
        "fault_held_s": round(ended - started, 1),
        "answers": len(answers),
        "slowest_s": {
            k: round(max(a.seconds for a in answers if a.kind == k), 2) for k in ("post", "get", "readyz")
        },
        "statuses_during_fault": {
            k: dict(Counter(a.status for a in during if a.kind == k)) for k in ("post", "get", "readyz")
        },
        "recovered_after_s": round(recovered, 2),
        "events_acked": len(probes.acked),
    }
    write_summary(name, summary)
    print(name, summary)

    unanswered = [a for a in answers if a.status is None]
    assert not unanswered, unanswered[:3]
    slow = [a for a in answers if a.seconds > ANSWER_BOUND]
    assert not slow, [(a.kind, round(a.seconds, 2), a.status) for a in slow[:5]]
    for answer in answers:
        assert answer.status in ((200, 201, 503) if answer.kind == "post" else (200, 503)), answer
        if answer.status == 503:
            assert answer.retry_after == "1", answer
            assert answer.body["error"]["code"] == errors.SERVICE_UNAVAILABLE, answer
    assert any(a.kind == "post" and a.status == 503 for a in during), "the fault never reached a POST"
    if ready_fails:
        ready_during = [a for a in during if a.kind == "readyz" and a.started >= started + 0.5]
        assert ready_during and all(a.status == 503 for a in ready_during), Counter(
            a.status for a in ready_during
        )
    assert recovered <= RECOVERY_BOUND
    rows = Counter(ActionLog.objects.filter(source=source).values_list("idempotency_key", flat=True))
    assert dict.fromkeys(probes.acked, 1) == dict(rows)  # acknowledged == stored, none twice
    assert {str(u) for u in ActionLog.objects.filter(source=source).values_list("uuid", flat=True)} == set(
        probes.acked.values()
    )
    return summary


@pytest.fixture
def proxied_gunicorn(request, gunicorn_factory):
    """gunicorn with its default bounds, reaching PostgreSQL through a proxy the test controls
    (indirect parameter: more environment for gunicorn)."""
    settings = connection.settings_dict
    proxy = faults.TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    url = database_url().replace(f":{settings['PORT'] or 5432}/", f":{proxy.port}/")
    try:
        yield gunicorn_factory(DATABASE_URL=url, **getattr(request, "param", {})), proxy
    finally:
        proxy.close()
        # Sessions the service opened through a partition may outlive it on the server's side.
        with pg.admin_connect() as admin:
            pg.terminate_service_backends(admin, pg.own_backend_pid())


@requires_postgres
def test_a_table_lock_held_from_outside_bounds_every_answer(proxied_gunicorn, writer_key):
    server, _ = proxied_gunicorn
    key, token = writer_key
    with pg.admin_connect(connection.settings_dict["NAME"]) as admin, Probes(server.port, token) as probes:

        class TableLock:
            def __enter__(self):
                admin.execute("BEGIN")
                admin.execute("LOCK TABLE auditlog_actionlog IN ACCESS EXCLUSIVE MODE")

            def __exit__(self, *exc):
                admin.execute("ROLLBACK")

        started, ended, recovered = hold_fault(probes, TableLock())
    check("timeouts-table-lock", probes, key, started, ended, recovered, ready_fails=False)


@requires_postgres
@pytest.mark.skipif(
    not faults.can_drop_packets() and os.environ.get("CI") != "true", reason="needs root and nftables (nft)"
)
def test_dropped_packets_to_the_database_bound_every_answer(proxied_gunicorn, writer_key):
    server, proxy = proxied_gunicorn
    key, token = writer_key
    with Probes(server.port, token) as probes:
        started, ended, recovered = hold_fault(probes, faults.dropped_packets(proxy.port))
    check("timeouts-dropped-packets", probes, key, started, ended, recovered, ready_fails=True)


@requires_postgres
@pytest.mark.parametrize(
    "proxied_gunicorn", [{}, {"DATABASE_POOL": "true"}], ids=["persistent", "pool"], indirect=True
)
def test_a_frozen_database_bounds_every_answer(proxied_gunicorn, writer_key, request):
    server, proxy = proxied_gunicorn
    key, token = writer_key
    with Probes(server.port, token) as probes:
        started, ended, recovered = hold_fault(probes, proxy.frozen())
    name = "timeouts-frozen-server" + ("-pool" if "pool" in request.node.callspec.id else "")
    check(name, probes, key, started, ended, recovered, ready_fails=True)


@requires_postgres
def test_a_frozen_database_bounds_every_answer_with_three_clients_per_thread(proxied_gunicorn, writer_key):
    """24 clients, 8 gunicorn threads: requests queue, and still every answer is bounded."""
    server, proxy = proxied_gunicorn
    key, token = writer_key
    with Probes(server.port, token, producers=16, readers=7) as probes:
        started, ended, recovered = hold_fault(probes, proxy.frozen())
    check("timeouts-frozen-server-24-clients", probes, key, started, ended, recovered, ready_fails=True)


@requires_sqlite
def test_a_sqlite_write_lock_held_from_outside_gives_503s_and_reads_go_on(gunicorn, writer_key):
    key, token = writer_key

    class WriteLock:
        def __enter__(self):
            self.holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
            self.holder.execute("BEGIN IMMEDIATE")  # what the sqlite3 shell holds in a transaction

        def __exit__(self, *exc):
            self.holder.execute("ROLLBACK")
            self.holder.close()

    with Probes(gunicorn.port, token) as probes:
        started, ended, recovered = hold_fault(probes, WriteLock())
    summary = check("timeouts-sqlite-lock", probes, key, started, ended, recovered, ready_fails=False)
    during = [a for a in probes.answers if a.started >= started + 1 and a.started + a.seconds <= ended]
    assert all(a.status == 200 for a in during if a.kind in ("get", "readyz"))  # WAL: reads go on
    assert summary["slowest_s"]["post"] <= 5.0 + 1.0  # SQLITE_BUSY_TIMEOUT, plus the request
