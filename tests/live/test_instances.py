"""Several app instances against one database, as a deployment scaled out runs: three gunicorns
on their own ports (two workers each, each worker with its own group commit), with producers
retrying the same idempotency keys on all of them at once. Every key is stored exactly once,
whichever instance wins, and every instance answers every retry with the winner's id."""

import threading
from collections import Counter, defaultdict

import pytest

from auditlog.models import ActionLog
from tests.conftest import make_event

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
