"""Bounded waits on PostgreSQL: the defaults every connection gets, the client deadline,
the bounds of commands; on SQLite, a held lock does not hold up reads."""

import sqlite3
import time

import pytest
from django.db import OperationalError, connection

from auditlog.db.timeouts import database_timeouts
from auditlog.models import ApiKey
from tests.conftest import EVENTS_URL, requires_postgres, requires_sqlite
from tests.test_settings import database_settings


def test_postgres_connections_get_server_and_network_bounds_by_default():
    options = database_settings(DATABASE_URL="postgres://u@db.example.com/audit")["OPTIONS"]

    assert options["options"] == (
        "-c statement_timeout=3000 -c lock_timeout=2000 -c idle_in_transaction_session_timeout=10000"
    )
    assert (options["connect_timeout"], options["tcp_user_timeout"]) == (3, 4000)
    assert (options["keepalives"], options["keepalives_idle"], options["keepalives_interval"]) == (1, 10, 2)
    assert options["keepalives_count"] == 3


def test_the_pool_timeout_is_2_s_by_default():
    database = database_settings(DATABASE_URL="postgres://u@db.example.com/audit", DATABASE_POOL="true")

    assert database["OPTIONS"]["pool"]["timeout"] == 2.0


def test_postgres_bounds_come_from_the_environment():
    options = database_settings(
        DATABASE_URL="postgres://u@db.example.com/audit",
        DATABASE_STATEMENT_TIMEOUT="7.5",
        DATABASE_LOCK_TIMEOUT="0.5",
        DATABASE_TCP_USER_TIMEOUT="9",
    )["OPTIONS"]

    assert "-c statement_timeout=7500 -c lock_timeout=500 " in options["options"]
    assert options["tcp_user_timeout"] == 9000


def show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


@requires_postgres
@pytest.mark.django_db
def test_a_live_connection_has_the_request_bounds():
    assert (show("statement_timeout"), show("lock_timeout")) == ("3s", "2s")
    assert show("idle_in_transaction_session_timeout") == "10s"
    connection.ensure_connection()
    assert connection.connection.client_timeout == 4.0


@requires_postgres
@pytest.mark.django_db
def test_a_server_that_does_not_answer_is_abandoned_at_the_client_deadline():
    connection.ensure_connection()
    connection.connection.client_timeout = 0.3
    started = time.monotonic()
    with pytest.raises(OperationalError, match="did not answer within 0.3 s"), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(2)")  # under the 3 s statement timeout

    assert time.monotonic() - started < 1.5
    assert connection.connection.closed


@requires_postgres
@pytest.mark.django_db
def test_command_bounds_apply_inside_the_block_and_the_request_bounds_come_back():
    with database_timeouts(statement=0, lock=5, idle_in_transaction=0):
        assert (show("statement_timeout"), show("lock_timeout")) == ("0", "5s")
        assert show("idle_in_transaction_session_timeout") == "0"
        assert connection.connection.client_timeout is None

    assert (show("statement_timeout"), show("lock_timeout")) == ("3s", "2s")
    assert show("idle_in_transaction_session_timeout") == "10s"
    assert connection.connection.client_timeout == 4.0


@requires_postgres
@pytest.mark.django_db
def test_nested_bounds_give_back_the_outer_ones():
    with database_timeouts(statement=60, lock=5):
        with database_timeouts(statement=0, lock=1):
            assert show("statement_timeout") == "0"
        assert (show("statement_timeout"), show("lock_timeout")) == ("1min", "5s")
        assert connection.connection.client_timeout == 61.0
    assert show("statement_timeout") == "3s"


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_command_bounds_survive_a_reconnect():
    with database_timeouts(statement=60, lock=5):
        connection.close()
        assert (show("statement_timeout"), show("lock_timeout")) == ("1min", "5s")
        assert connection.connection.client_timeout == 61.0
    assert show("statement_timeout") == "3s"


@requires_sqlite
@pytest.mark.django_db(transaction=True)
def test_reads_answer_at_once_while_a_writer_from_outside_holds_the_lock(reader_api):
    ApiKey.objects.update(last_used_at=None)  # the read would record the key's use: a write
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        response = reader_api.get(EVENTS_URL)
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert response.status_code == 200
    assert elapsed < 1.0  # not SQLITE_BUSY_TIMEOUT (5 s): the key's last use waits 50 ms at most
