"""Many concurrent producers against a real gunicorn: nothing lost, nothing doubled, no 5xx."""

import json

import pytest

from auditlog.models import ActionLog
from tests.live import load
from tests.live.conftest import LOG_DIR

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def stored(source) -> dict[str, str]:
    rows = ActionLog.objects.filter(source=source).values_list("idempotency_key", "uuid")
    return {key: str(uuid) for key, uuid in rows}


def write_summary(name: str, summary: dict) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"{name}.summary.json").write_text(json.dumps(summary, indent=2))


def test_100_concurrent_clients_every_request_succeeds_and_every_event_is_stored_once(gunicorn, writer_key):
    key, token = writer_key
    plan = load.Plan(clients=100, ops=20)

    results = load.run(plan, gunicorn.port, token)

    acked = load.acked(results)
    rows = stored(key)
    summary = {
        "requests": len(results),
        "statuses": load.status_counts(results),
        "events_sent": len(plan.sent_keys),
        "events_acked": len(acked),
        "rows_stored": ActionLog.objects.count(),
        "replays": sum(r.kind == "replay" for r in results),
    }
    write_summary("concurrency", summary)
    assert {r.status for r in results} <= {200, 201}, summary
    assert len(plan.sent_keys) >= 5000
    assert acked.keys() == plan.sent_keys
    assert rows == acked  # every acknowledged event stored, under the id it was acknowledged with
    assert ActionLog.objects.count() == len(plan.sent_keys)  # and nothing doubled
    log = gunicorn.log()
    assert "database is locked" not in log
    assert "Traceback" not in log


def test_replays_under_load_return_the_original_id(gunicorn, writer_key):
    _, token = writer_key
    plan = load.Plan(clients=20, ops=30)

    results = load.run(plan, gunicorn.port, token)

    firsts = {}
    for result in results:
        if result.kind == "single":
            firsts.update(result.acked)
    replays = [r for r in results if r.kind == "replay"]
    assert replays
    assert all(r.status == 200 for r in replays)
    assert all(firsts[k] == v for r in replays for k, v in r.acked.items())


def test_the_same_batch_from_8_clients_at_once_is_stored_once(gunicorn, writer_key):
    """Concurrent batches with the same idempotency keys race between lookup and insert on
    PostgreSQL (the losers' COPY fails and retries); SQLite serialises them. Either way: once."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import BATCH_URL, make_event

    key, token = writer_key
    events = [make_event(idempotency_key=f"same-{n}", actor={"id": str(n)}) for n in range(300)]

    def post(_):
        client = load.Client(gunicorn.port, token)
        try:
            return client.send("POST", BATCH_URL, {"events": events})
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))

    assert [status for status, _ in answers] == [200] * 8
    ids = [[item["id"] for item in body["results"]] for _, body in answers]
    assert all(answer == ids[0] for answer in ids)  # everyone got the same event ids
    per_answer = [{item["status"] for item in body["results"]} for _, body in answers]
    assert per_answer.count({201}) == 1 and per_answer.count({200}) == 7  # one created, seven replayed
    assert stored(key) == {f"same-{n}": ids[0][n] for n in range(300)}
    assert "Traceback" not in gunicorn.log()
