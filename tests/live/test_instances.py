"""Several app instances against one database, as a deployment scaled out runs: three gunicorns
on their own ports (two workers each, each worker with its own group commit), with producers
retrying the same idempotency keys on all of them at once. Every key is stored exactly once,
whichever instance wins, and every instance answers every retry with the winner's id. Each
instance groups its own concurrent inserts, and the connection budget counts every instance."""

import subprocess
import sys
import threading
from collections import Counter, defaultdict

import pytest
from django.db import connection

from auditlog.models import ActionLog
from tests.conftest import make_event, requires_postgres
from tests.live.conftest import ROOT, server_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

INSTANCES = 3
THREADS_PER_INSTANCE = 3
KEYS = 150
BATCHES = 6  # each sent to every instance at once
BATCH_SIZE = 50


def test_the_same_keys_racing_across_three_instances_are_stored_once(gunicorn_factory, writer_key):
    servers = [gunicorn_factory(AUDITLOG_APP_INSTANCES=str(INSTANCES)) for _ in range(INSTANCES)]
    source, token = writer_key
    headers = {"Authorization": f"Bearer {token}"}
    answers: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
    failures = []
    lock = threading.Lock()
    start = threading.Barrier(INSTANCES * THREADS_PER_INSTANCE)

    def producer(instance: int, thread: int) -> None:
        server = servers[instance]
        order = list(range(KEYS))
        # every thread walks the keys from another place: most keys meet on several instances
        shift = (instance * THREADS_PER_INSTANCE + thread) * KEYS // (INSTANCES * THREADS_PER_INSTANCE)
        order = order[shift:] + order[:shift]
        start.wait()
        for n in order:
            key = f"race-{n}"
            try:
                status, _, body = server.request(
                    "POST", "/api/v1/events", make_event(idempotency_key=key), headers
                )
            except OSError as exc:
                status, body = None, str(exc)
            with lock:
                if status in (200, 201):
                    answers[key].append((instance, status, body["id"]))
                else:
                    failures.append((instance, key, status, body))

    threads = [
        threading.Thread(target=producer, args=(instance, thread))
        for instance in range(INSTANCES)
        for thread in range(THREADS_PER_INSTANCE)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not failures, failures[:5]
    assert len(answers) == KEYS
    stored = dict(ActionLog.objects.filter(source=source).values_list("idempotency_key", "uuid"))
    assert len(stored) == KEYS == ActionLog.objects.filter(source=source).count()
    instances_seen = Counter()
    for key, got in answers.items():
        assert len(got) == INSTANCES * THREADS_PER_INSTANCE
        assert {event_id for _, _, event_id in got} == {str(stored[key])}, key  # the winner's id, everywhere
        assert [status for _, status, _ in got].count(201) == 1, got  # one instance stored it
        instances_seen.update({instance for instance, status, _ in got if status == 201})
    assert len(instances_seen) == INSTANCES  # every instance won some races
    for server in servers:
        assert "Traceback" not in server.log()


def test_the_same_batches_racing_across_three_instances_are_stored_once(gunicorn_factory, writer_key):
    servers = [gunicorn_factory(AUDITLOG_APP_INSTANCES=str(INSTANCES)) for _ in range(INSTANCES)]
    source, token = writer_key
    headers = {"Authorization": f"Bearer {token}"}
    batches = [
        {"events": [make_event(idempotency_key=f"batch-{b}-{n}") for n in range(BATCH_SIZE)]}
        for b in range(BATCHES)
    ]
    results, failures = defaultdict(list), []
    lock = threading.Lock()

    def send(instance: int, batch: int, start: threading.Barrier) -> None:
        start.wait()
        status, _, body = servers[instance].request("POST", "/api/v1/events/batch", batches[batch], headers)
        with lock:
            if status != 200:
                failures.append((instance, batch, status, body))
                return
            for item in body["results"]:
                results[f"batch-{batch}-{item['index']}"].append((item["status"], item.get("id")))

    for batch in range(BATCHES):
        start = threading.Barrier(INSTANCES)
        threads = [threading.Thread(target=send, args=(i, batch, start)) for i in range(INSTANCES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

    assert not failures, failures[:3]
    stored = dict(ActionLog.objects.filter(source=source).values_list("idempotency_key", "uuid"))
    assert len(stored) == BATCHES * BATCH_SIZE == ActionLog.objects.filter(source=source).count()
    for key, got in results.items():
        assert len(got) == INSTANCES
        assert {status for status, _ in got} <= {200, 201} and [s for s, _ in got].count(201) == 1, (key, got)
        assert {event_id for _, event_id in got} == {str(stored[key])}


CLIENTS_PER_INSTANCE = 8
EVENTS_PER_CLIENT = 40


@requires_postgres
def test_each_instance_groups_its_own_concurrent_inserts(gunicorn_factory, writer_key):
    """Group commit is per process: each instance's concurrent single events share statements.
    Rows one statement inserted share its transaction id (xmin), so per instance the events
    outnumber the transactions that stored them."""
    servers = [gunicorn_factory(AUDITLOG_APP_INSTANCES=str(INSTANCES)) for _ in range(INSTANCES)]
    source, token = writer_key
    headers = {"Authorization": f"Bearer {token}"}
    failures = []
    start = threading.Barrier(INSTANCES * CLIENTS_PER_INSTANCE)

    def client(instance: int) -> None:
        start.wait()
        for _ in range(EVENTS_PER_CLIENT):
            event = make_event(actor={"id": f"instance-{instance}", "type": "service"})
            status, _, body = servers[instance].request("POST", "/api/v1/events", event, headers)
            if status != 201:
                failures.append((instance, status, body))

    threads = [
        threading.Thread(target=client, args=(instance,))
        for instance in range(INSTANCES)
        for _ in range(CLIENTS_PER_INSTANCE)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not failures, failures[:3]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT actor_id, count(*), count(DISTINCT xmin::text) FROM auditlog_actionlog"
            " WHERE source_id = %s GROUP BY actor_id ORDER BY actor_id",
            [source.pk],
        )
        per_instance = {actor: (events, transactions) for actor, events, transactions in cursor.fetchall()}
    assert set(per_instance) == {f"instance-{n}" for n in range(INSTANCES)}
    for actor, (events, transactions) in per_instance.items():
        assert events == CLIENTS_PER_INSTANCE * EVENTS_PER_CLIENT, actor
        assert transactions < events, (actor, events, transactions)  # some statements stored several


@requires_postgres
def test_the_connection_budget_check_counts_every_instance():
    """auditlog.E007 multiplies AUDITLOG_APP_INSTANCES: the same workers and threads that fit the
    server for three instances do not fit it for a hundred."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])

    def check(instances: int) -> subprocess.CompletedProcess:
        env = server_env(AUDITLOG_APP_INSTANCES=str(instances), WEB_CONCURRENCY="2", GUNICORN_THREADS="4")
        env.pop("DATABASE_MAINTENANCE_URL", None)  # the service's own view of the budget
        return subprocess.run(
            [sys.executable, "manage.py", "check", "--database", "default"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    fits = check(INSTANCES)
    over = check(max_connections // 8 + 1)

    assert "auditlog.E007" not in fits.stdout + fits.stderr
    assert over.returncode != 0
    assert f"({max_connections // 8 + 1} instance(s) x 2 workers x 4 threads)" in over.stderr
