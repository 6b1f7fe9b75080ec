"""PostgreSQL faults during load: killed connections, a restarted server, connection budget."""

import threading
import time

import pytest
from django.db import connection

from auditlog.http import errors
from auditlog.models import ActionLog
from tests.conftest import requires_postgres, without_request_id
from tests.live import load, pg
from tests.live.test_concurrency import stored, write_summary

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), requires_postgres]

UNAVAILABLE = {"error": {"code": errors.SERVICE_UNAVAILABLE, "message": errors.MSG_UNAVAILABLE}}


class Background:
    """Run a load plan in a thread; `join()` returns its results."""

    def __init__(self, plan, port, token):
        self.results = None
        self.thread = threading.Thread(target=self._run, args=(plan, port, token))
        self.thread.start()

    def _run(self, plan, port, token):
        self.results = load.run(plan, port, token)

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "load did not finish"
        return self.results


def wait_for_acks(results_holder: load.Plan, minimum: int, timeout=30.0):
    deadline = time.monotonic() + timeout
    while len(results_holder.sent_keys) < minimum and time.monotonic() < deadline:
        time.sleep(0.05)


def test_killed_connections_are_replaced_and_in_flight_requests_get_json_503(gunicorn, writer_key):
    """Two kills of every service backend: one under full load, one with the load paused.

    Under full load every stale connection is used again within milliseconds, racing the kill;
    those requests may get a JSON 503. With the load paused, no request is in flight at the
    kill, so each stale connection's next use starts after it: with health checks, all succeed.
    """
    key, token = writer_key
    own = pg.own_backend_pid()
    plan = load.Plan(clients=30, ops=400, stop=threading.Event(), gate=threading.Event())
    plan.gate.set()
    background = Background(plan, gunicorn.port, token)
    wait_for_acks(plan, 1500)

    with pg.admin_connect() as admin:
        hard_started = time.monotonic()
        killed_under_load = pg.terminate_service_backends(admin, own)
        wait_for_acks(plan, len(plan.sent_keys) + 1000)
        plan.pause_and_drain()
        paused_kill = time.monotonic()
        killed_paused = pg.terminate_service_backends(admin, own)
        plan.gate.set()
    time.sleep(2.0)
    plan.stop.set()
    results = background.join()

    failed = [r for r in results if r.status not in (200, 201)]
    after_paused_kill = [r for r in results if r.started > paused_kill]
    acked = load.acked(results)
    rows = stored(key)
    write_summary(
        "pg-kill",
        {
            "backends_killed_under_load": killed_under_load,
            "backends_killed_paused": killed_paused,
            "requests": len(results),
            "statuses": load.status_counts(results),
            "requests_after_paused_kill": len(after_paused_kill),
            "events_sent": len(plan.sent_keys),
            "events_acked": len(acked),
            "rows_stored": len(rows),
            "stored_not_acked": len(rows.keys() - acked.keys()),
        },
    )
    assert killed_under_load >= 1 and killed_paused >= 1
    assert after_paused_kill and all(r.status in (200, 201) for r in after_paused_kill)
    for result in failed:  # only requests racing the kill under load, and only as a JSON 503
        assert (result.status, without_request_id(result.body)) == (503, UNAVAILABLE)
        assert result.finished >= hard_started and result.started < paused_kill
    assert acked.items() <= rows.items()  # every acknowledged event is stored, under its id
    assert rows.keys() <= plan.sent_keys
    assert "Traceback" not in gunicorn.log()


@pytest.mark.skipif(not pg.can_restart(), reason="restarting PostgreSQL needs pg_ctlcluster and root")
def test_restarted_server_loses_and_doubles_nothing_when_clients_retry(gunicorn, writer_key):
    key, token = writer_key
    plan = load.Plan(clients=20, ops=80, retry_until=time.monotonic() + 90)
    background = Background(plan, gunicorn.port, token)
    wait_for_acks(plan, 1000)

    try:
        restart_started = time.monotonic()
        pg.restart_server()
        restart_seconds = time.monotonic() - restart_started
    finally:
        pg.ensure_running()
    results = background.join()
    connection.close()  # this process's own connection died with the server

    faults = [r for r in results if r.status not in (200, 201)]
    acked = load.acked(results)
    rows = stored(key)
    write_summary(
        "pg-restart",
        {
            "restart_seconds": round(restart_seconds, 2),
            "requests": len(results),
            "statuses": load.status_counts(results),
            "faults_retried": len(faults),
            "events_sent": len(plan.sent_keys),
            "events_acked": len(acked),
            "rows_stored": ActionLog.objects.count(),
        },
    )
    assert faults, "the restart should have been felt by some requests"
    assert all(r.status == 503 and without_request_id(r.body) == UNAVAILABLE for r in faults)
    assert acked.keys() == plan.sent_keys  # every event eventually acknowledged
    assert rows == acked  # stored exactly once, under the id it was acknowledged with
    assert ActionLog.objects.count() == len(plan.sent_keys)
    assert gunicorn.request("GET", "/readyz")[0] == 200  # recovered by itself
    assert "Traceback" not in gunicorn.log()


@pytest.mark.parametrize(
    ("env", "budget"),
    [
        ({"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4"}, 8),
        (
            {
                "WEB_CONCURRENCY": "2",
                "GUNICORN_THREADS": "8",
                "DATABASE_POOL": "true",
                "DATABASE_POOL_MAX_SIZE": "3",
            },
            6,
        ),
    ],
    ids=["persistent", "pool"],
)
def test_connections_stay_within_budget_and_are_released_at_shutdown(
    gunicorn_factory, writer_key, env, budget
):
    _, token = writer_key
    own = pg.own_backend_pid()
    server = gunicorn_factory(**env)
    samples, done = [], threading.Event()

    def sample():
        with pg.admin_connect() as admin:
            while not done.is_set():
                samples.append(len(pg.service_backends(admin, own)))
                time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results = load.run(load.Plan(clients=60, ops=15), server.port, token)
    done.set()
    sampler.join()
    assert server.stop() == 0
    with pg.admin_connect() as admin:
        after_stop = len(pg.service_backends(admin, own))

    write_summary(
        f"pg-budget-{'pool' if 'DATABASE_POOL' in env else 'persistent'}",
        {"peak": max(samples), "budget": budget, "after_stop": after_stop},
    )
    assert {r.status for r in results} <= {200, 201}
    assert 1 <= max(samples) <= budget
    assert after_stop == 0
