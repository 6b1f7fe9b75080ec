"""On PostgreSQL the ingest INSERT is a prepared statement (DATABASE_PREPARED_STATEMENTS), and
with prepare_threshold None (behind PgBouncer in transaction mode) nothing is prepared."""

import pytest
from django.db import connection
from django.utils import timezone

from auditlog.events.uuid7 import uuid7
from auditlog.events.validation import event_validate
from auditlog.ingest.storage import EventRows, events_insert_new
from auditlog.keys.services import api_key_create
from auditlog.models import Scope
from tests.conftest import make_event, requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db]


INSERT = "WITH v (%INSERT INTO auditlog_actionlog%"  # the keys' insert, then the events'


def insert_singles(count: int) -> None:
    source = api_key_create(name="producer", scopes={Scope.WRITE})[0]
    make = EventRows(received_at=timezone.now(), source_id=source.pk)
    for _ in range(count):
        assert events_insert_new([make.row(event_validate(make_event()), uuid7())])


def prepared_inserts() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", [INSERT])
        return [statement for (statement,) in cursor.fetchall()]


def test_the_insert_is_prepared_after_its_threshold_of_uses():
    assert connection.settings_dict["OPTIONS"]["prepare_threshold"] == 5
    insert_singles(4)
    assert prepared_inserts() == []  # not yet: one-off row counts are never prepared
    insert_singles(2)
    assert len(prepared_inserts()) == 1


def test_with_no_threshold_nothing_is_prepared(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)

    insert_singles(10)

    assert prepared_inserts() == []
