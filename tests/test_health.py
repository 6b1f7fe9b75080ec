import sqlite3

import pytest
from django.db import connection

from auditlog.http import errors
from auditlog.models import ActionLog
from tests.conftest import BATCH_URL, EVENTS_URL, make_event, requires_sqlite, without_request_id


def test_healthz_needs_no_database(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_asks_the_database(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": connection.vendor}


@pytest.fixture
def short_busy_timeout():
    """Reconnect with a 0.2 s busy timeout, so a held lock is felt quickly."""
    options = connection.settings_dict["OPTIONS"]
    saved = options["timeout"]
    options["timeout"] = 0.2
    connection.close()
    yield
    options["timeout"] = saved
    connection.close()


@pytest.fixture
def lock_holder():
    """A second connection that can hold SQLite's write lock, as another process would."""
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    yield holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


@requires_sqlite
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("url", "body"),
    [
        (EVENTS_URL, make_event()),
        (EVENTS_URL, make_event(idempotency_key="k")),
        (BATCH_URL, {"events": [make_event(), make_event(idempotency_key="k2")]}),
    ],
    ids=["single", "single-with-key", "batch"],
)
def test_locked_database_answers_503_and_stores_nothing(api, short_busy_timeout, lock_holder, url, body):
    assert api.post(url, "{").status_code == 400  # authenticates, so last_used_at is fresh
    lock_holder.execute("BEGIN IMMEDIATE")

    response = api.post(url, body)

    assert response.status_code == 503
    assert without_request_id(response.json()) == {
        "error": {"code": errors.SERVICE_UNAVAILABLE, "message": errors.MSG_UNAVAILABLE}
    }
    assert response["Retry-After"] == "1"
    lock_holder.execute("ROLLBACK")
    assert ActionLog.objects.count() == 0
    assert api.post(url, body).status_code in (200, 201)
    assert ActionLog.objects.count() == (2 if url == BATCH_URL else 1)


@requires_sqlite
@pytest.mark.django_db(transaction=True)
def test_batch_waiting_on_the_writer_queue_past_the_busy_timeout_answers_503(api, settings):
    import fcntl

    settings.SQLITE_BUSY_TIMEOUT = 0.2
    with open(f"{connection.settings_dict['NAME']}.writer-lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process's batch is writing
        response = api.post(BATCH_URL, {"events": [make_event(), make_event()]})
        fcntl.flock(held, fcntl.LOCK_UN)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == errors.SERVICE_UNAVAILABLE
    assert response["Retry-After"] == "1"
    assert ActionLog.objects.count() == 0
    assert api.post(BATCH_URL, {"events": [make_event(), make_event()]}).status_code == 200
