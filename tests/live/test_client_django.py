"""The Django integration in a producer app's own process and database, delivering to a real
gunicorn: an event recorded in a rolled-back transaction never arrives; one in a committed
transaction always does, also when the process is killed right after the commit; registered
models' changes arrive with before and after, secrets never; a request gives the actor, the
client's address, the user agent and the request id."""

import json
import os
import subprocess
import sys

import psycopg
import pytest
from django.db import connection

from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope
from tests.live.conftest import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SECRETS = ("pbkdf2$hash-one", "pbkdf2$hash-two", "1234", "tok-one")


@pytest.fixture(params=["sqlite", "postgres"])
def producer_database(request, tmp_path):
    """The producer app's own database: a SQLite file, or (where the suite runs on PostgreSQL)
    a fresh PostgreSQL database on the same server."""
    if request.param == "sqlite":
        yield {"PRODUCER_DB": str(tmp_path / "producer.sqlite3")}
        return
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL producer runs where the suite runs on PostgreSQL")
    settings = connection.settings_dict
    base = f"postgres://postgres@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}"
    name = "auditlog_producer_test"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield {"PRODUCER_DATABASE_URL": f"{base}/{name}"}
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def producer(database, url, token, *args):
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'clients/python'}",
        "DJANGO_SETTINGS_MODULE": "tests.client.django_producer.settings",
        **database,
        "AUDITLOG_URL": url,
        "AUDITLOG_TOKEN": token,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def scenario(database, url, token, name):
    return producer(database, url, token, "-m", "tests.client.django_producer.scenario", name)


def test_a_django_producer_delivers_what_committed_and_nothing_else(gunicorn, producer_database):
    source, token = api_key_create(name="shop", scopes={Scope.WRITE})

    ran = {
        name: scenario(producer_database, gunicorn.url, token, name)
        for name in ("transactions", "models", "request")
    }
    for name, done in ran.items():
        assert done.returncode == 0, (name, done.stdout, done.stderr)
    assert json.loads(ran["transactions"].stdout) == {"tags": ["kept"]}
    killed = scenario(producer_database, gunicorn.url, token, "die-after-commit")
    assert killed.returncode == -9, killed.stderr
    models = json.loads(ran["models"].stdout)
    user = json.loads(ran["request"].stdout)["user"]

    sent = producer(
        producer_database, gunicorn.url, token, "-m", "django", "auditlog_client_send", "--timeout", "60"
    )
    assert sent.returncode == 0, sent.stderr
    assert "0 pending" in sent.stdout and "0 dead letters" in sent.stdout

    events = {event.idempotency_key: event for event in ActionLog.objects.filter(source=source)}
    assert "committed" in events and "killed-after-commit" in events
    assert "rolled-back" not in events
    by_action = {}
    for event in events.values():
        by_action.setdefault(event.action, []).append(event)
    assert sorted(len(by_action[action]) for action in ("shop.customer.create", "shop.invoice.delete")) == [
        1,
        1,
    ]
    [customer] = by_action["shop.customer.create"]
    assert customer.metadata["changes"]["password"] == [None, "[secret]"]
    assert customer.metadata["changes"]["email"] == [None, "ada@example.com"]
    assert (customer.target_type, customer.target_id) == ("shop.customer", str(models["customer"]))
    updates = sorted(
        (event.metadata["changes"] for event in by_action["shop.invoice.update"]),
        key=lambda changes: sorted(changes),
    )
    assert {"total": ["10.00", "12.50"], "status": ["open", "paid"]} in updates
    tags = [changes["tags"] for changes in updates if "tags" in changes]
    red, blue = str(models["red"]), str(models["blue"])
    assert sorted(tags) == sorted([[[], sorted([red, blue])], [sorted([red, blue]), [blue]]])
    [password] = by_action["shop.customer.update"]
    assert password.metadata["changes"] == {"password": ["[secret]", "[secret]"]}
    stored = json.dumps([event.metadata for event in events.values()])
    assert not any(secret in stored for secret in SECRETS), "a secret was sent"

    [download] = by_action["report.download"]
    assert (download.actor_id, download.actor_type, download.actor_name) == (str(user), "user", "grace")
    assert download.ip_address == "203.0.113.50"  # one trusted proxy: the address it appended
    assert download.user_agent == "Mozilla/5.0 (test)" and download.metadata == {"request_id": "req-123"}
