import contextlib
import json
import os
import re
import sys
import threading
from pathlib import Path

import environ
import pytest
from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created
from django.db.models.signals import pre_save
from django.test import TransactionTestCase

from auditlog.db.partitions import partitions_ensure_range
from auditlog.db.writer_queue import writes_may_go
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope

EVENTS_URL = "/api/v1/events"
BATCH_URL = "/api/v1/events/batch"


def make_event(**overrides) -> dict:
    event = {
        "action": "invoice.delete",
        "actor": {"id": "42", "type": "user", "name": "Ada"},
        "target": {"type": "invoice", "id": "7", "name": "INV-7"},
        "occurred_at": "2026-01-31T12:00:00Z",
        "outcome": "success",
        "context": {"ip": "203.0.113.9", "user_agent": "billing/1.0"},
        "metadata": {"reason": "duplicate"},
    }
    event.update(overrides)
    return event


class ApiClient:
    """The Django test client with a bearer token and JSON bodies."""

    def __init__(self, client, token):
        self.client = client
        self.token = token

    def headers(self, extra=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return headers | (extra or {})

    def post(self, url, body, *, headers=None, content_type="application/json"):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.client.post(url, data=data, content_type=content_type, headers=self.headers(headers))

    def get(self, url, **params):
        return self.client.get(url, params, headers=self.headers())


@pytest.fixture
def writer_key(db):
    return api_key_create(name="producer", scopes={Scope.WRITE, Scope.READ})


@pytest.fixture
def api(client, writer_key):
    return ApiClient(client, writer_key[1])


@pytest.fixture
def reader_api(client, db):
    return ApiClient(client, api_key_create(name="reader", scopes={Scope.READ})[1])


@pytest.fixture
def anonymous_api(client, db):
    return ApiClient(client, None)


# --- PostgreSQL with two roles (make test-postgres, tests/pg_roles.py) ---------------------------
# The suite connects as the tables' owner, which creates and migrates the test database; once it
# is set up, every connection of the default alias runs as the runtime role (SET ROLE), so the
# service's code meets exactly the runtime role's privileges. Tests that do the maintenance
# role's work (seal, purge, tamper as the owner) take the `maintenance_role` fixture; the flush
# after a transactional test runs as the owner too. Attacks log in as the runtime role itself.
_runtime_role: str | None = None


def runtime_password() -> str:
    """The runtime role's password, from DATABASE_URL (the runtime role's URL)."""
    return environ.Env.db_url_config(os.environ.get("DATABASE_URL", ""))["PASSWORD"] or ""


def two_roles() -> str | None:
    """The runtime role, when this session runs PostgreSQL with two roles."""
    role = settings.AUDITLOG_RUNTIME_ROLE
    if connection.vendor == "postgresql" and settings.AUDITLOG_DATABASE_ROLE == "maintenance" and role:
        return role if role != connection.settings_dict["USER"] else None
    return None


def _set_role(db, role: str | None) -> None:
    quoted = db.ops.quote_name(role) if role else None
    with db.cursor() as cursor:
        cursor.execute(f"SET ROLE {quoted}" if quoted else "RESET ROLE")


def _as_runtime(sender, connection, **kwargs) -> None:
    if _runtime_role and connection.alias == "default":
        _set_role(connection, _runtime_role)


connection_created.connect(_as_runtime, dispatch_uid="tests.as_runtime_role")


@contextlib.contextmanager
def as_owner():
    """Run the block as the tables' owner (a no-op on SQLite or with one role)."""
    if not _runtime_role:
        yield
        return
    connection.ensure_connection()
    _set_role(connection, None)
    try:
        yield
    finally:
        if connection.needs_rollback:
            pass  # the test's rollback undoes the RESET ROLE with the rest
        elif connection.is_usable():
            _set_role(connection, _runtime_role)
        else:
            connection.close()  # the next connection is the runtime role's again


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    global _runtime_role
    _runtime_role = two_roles()
    if _runtime_role:
        with django_db_blocker.unblock():
            connection.close()
    yield


@pytest.fixture
def maintenance_role(db):
    """The test runs as the tables' owner: the maintenance role's work (seal, purge, tampering
    that an owner can do)."""
    with as_owner():
        yield


@pytest.fixture
def owner_connections(transactional_db):
    """Every connection the test opens is the owner's, this process's and forked ones': for the
    maintenance role's work that closes and reopens connections (sealing in several processes)."""
    global _runtime_role
    saved, _runtime_role = _runtime_role, None
    connection.close()
    try:
        yield
    finally:
        connection.close()
        _runtime_role = saved


_teardown = TransactionTestCase._fixture_teardown


def _teardown_as_owner(self):
    with as_owner():
        _teardown(self)


TransactionTestCase._fixture_teardown = _teardown_as_owner


requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (run with DATABASE_URL=postgres://...)"
)
requires_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite-specific behaviour")


# The SQLite writer queue's rule (auditlog/db/writer_queue.py), held on every test: a statement
# the app runs that writes the trail's tables runs only while its thread holds the queue or has
# said why it goes without (outside_the_queue). sqlite3's trace callback sees every statement a Django
# connection runs, the ones below the ORM included, in the thread that runs it.
TRAIL_WRITE = re.compile(
    r"\s*(INSERT|REPLACE|UPDATE|DELETE)\b[^;]*?\b(auditlog_actionlog|auditlog_trailleaf|auditlog_trailnode"
    r"|auditlog_checkpoint|auditlog_retentionrecord"
    r"|auditlog_delete_permit)\b",
    re.IGNORECASE,
)
unqueued_writes: list[str] = []


APP = str(Path(__file__).resolve().parent.parent / "auditlog")
TESTS = str(Path(__file__).resolve().parent)


def _written_by_the_app() -> bool:
    """Whether the nearest caller of ours is the app (a test's own out-of-band write, as an
    attacker's or an outside writer's, is not held to the rule)."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(APP):
            return True
        if filename.startswith(TESTS):
            return False
        frame = frame.f_back
    return False


def _trace(statement: str) -> None:
    if not writes_may_go() and TRAIL_WRITE.match(statement) and _written_by_the_app():
        unqueued_writes.append(f"{threading.current_thread().name}: {statement[:300]}")


def _watch(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.set_trace_callback(_trace)


connection_created.connect(_watch, dispatch_uid="tests.writer_queue_watch")


@pytest.fixture(autouse=True)
def trail_writes_take_the_writer_queue():
    if connection.vendor == "sqlite" and connection.connection is not None:
        connection.connection.set_trace_callback(_trace)
    unqueued_writes.clear()
    yield
    found, unqueued_writes[:] = list(unqueued_writes), []
    assert not found, "wrote the trail's tables outside the SQLite writer queue:\n" + "\n".join(found)


def _partition_for_a_test_row(sender, instance, **kwargs) -> None:
    """A test's own ActionLog.objects.create() with a received_at of its choosing (any year)
    gets its partition as the app's inserts do (auditlog.db.partitions); the app's one ORM
    insert, event_record_internal, asks for it itself."""
    if instance._state.adding:
        partitions_ensure_range(instance.received_at, instance.received_at)


pre_save.connect(_partition_for_a_test_row, sender=ActionLog, dispatch_uid="tests.partition_for_a_test_row")


def without_request_id(body):
    """An error body without its request_id, which every error carries (32 hex digits when the
    service made it): for comparing bodies whole."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = dict(body["error"])
        request_id = error.pop("request_id", None)
        assert isinstance(request_id, str) and request_id, body
        return {**body, "error": error}
    return body
