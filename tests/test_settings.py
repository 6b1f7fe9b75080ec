"""The effective configuration, read from a fresh process for each environment."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import requires_postgres, requires_sqlite

ROOT = Path(__file__).resolve().parent.parent
PRINT_DATABASE = (
    "import json, django; django.setup(); from django.conf import settings; "
    "print(json.dumps(settings.DATABASES['default'], default=str))"
)


def run(args, **env):
    """Run a Python process with only the given environment (no .env file)."""
    environment = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings"}
    environment |= {"DJANGO_ENV_FILE": "/nonexistent", "DJANGO_SECRET_KEY": "k" * 60} | env
    environment = {name: value for name, value in environment.items() if value is not None}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def database_settings(**env):
    result = run(["-c", PRINT_DATABASE], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sqlite_is_the_default_with_wal_busy_timeout_and_immediate():
    database = database_settings()

    assert database["ENGINE"] == "auditlog.db.sqlite3"
    assert database["NAME"] == str(ROOT / "db.sqlite3")
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert database["OPTIONS"]["timeout"] == 5.0
    assert database["OPTIONS"]["init_command"] == "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL"
    assert database["CONN_MAX_AGE"] == 600
    assert database["ATOMIC_REQUESTS"] is False


def test_sqlite_busy_timeout_comes_from_the_environment():
    assert database_settings(SQLITE_BUSY_TIMEOUT="2.5")["OPTIONS"]["timeout"] == 2.5


def test_postgres_gets_persistent_connections_with_health_checks():
    database = database_settings(DATABASE_URL="postgres://app@db.internal:5432/audit")

    assert database["ENGINE"] == "auditlog.db.postgresql"
    assert database["CONN_MAX_AGE"] == 600
    assert database["CONN_HEALTH_CHECKS"] is True
    assert database["OPTIONS"]["connect_timeout"] == 3
    assert "pool" not in database["OPTIONS"]


def test_postgres_prepares_the_ingest_insert_unless_told_not_to_for_pgbouncer():
    url = "postgres://app@db.internal:5432/audit"

    assert database_settings(DATABASE_URL=url)["OPTIONS"]["prepare_threshold"] == 5
    unprepared = database_settings(DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="false")
    assert "prepare_threshold" not in unprepared["OPTIONS"]  # Django then passes None: never


def test_behind_pgbouncer_no_startup_options_prepared_statements_or_server_side_cursors():
    url = "postgres://app@pgbouncer.internal:6432/audit"
    direct = database_settings(DATABASE_URL=url)
    behind = database_settings(DATABASE_URL=url, DATABASE_POOLER="pgbouncer-transaction")

    assert "statement_timeout" in direct["OPTIONS"]["options"]
    assert not direct.get("DISABLE_SERVER_SIDE_CURSORS")
    assert "options" not in behind["OPTIONS"]  # PgBouncer refuses it; its connect_query sets the bounds
    assert "prepare_threshold" not in behind["OPTIONS"]
    assert behind["DISABLE_SERVER_SIDE_CURSORS"] is True


def test_commands_go_straight_to_postgresql_past_pgbouncer():
    env = {
        "DATABASE_URL": "postgres://app@pgbouncer.internal:6432/audit",
        "DATABASE_POOLER": "pgbouncer-transaction",
        "DATABASE_DIRECT_URL": "postgres://app@db.internal:5432/audit",
    }
    web = database_settings(**env)
    command = database_settings(**env, AUDITLOG_DATABASE_ROUTE="direct")  # what manage.py sets

    assert (web["HOST"], web["PORT"]) == ("pgbouncer.internal", 6432)
    assert (command["HOST"], command["PORT"]) == ("db.internal", 5432)
    assert "statement_timeout" in command["OPTIONS"]["options"]  # a direct connection's bounds
    assert "prepare_threshold" in command["OPTIONS"]
    refused = run(["-c", PRINT_DATABASE], DATABASE_URL=env["DATABASE_URL"], DATABASE_POOLER="pgpool")
    assert refused.returncode != 0 and "DATABASE_POOLER" in refused.stderr


def test_postgres_pool_forces_conn_max_age_zero():
    database = database_settings(
        DATABASE_URL="postgres://app@db.internal/audit",
        DATABASE_POOL="true",
        DATABASE_POOL_MAX_SIZE="4",
        DATABASE_POOL_TIMEOUT="7",
    )

    assert database["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 4, "timeout": 7.0}
    assert database["CONN_MAX_AGE"] == 0
    assert database["CONN_HEALTH_CHECKS"] is True


def test_unsupported_database_is_refused_clearly():
    result = run(["-c", PRINT_DATABASE], DATABASE_URL="mysql://root@127.0.0.1/audit")

    assert result.returncode != 0
    assert "unsupported engine" in result.stderr


def test_missing_secret_key_stops_startup_with_a_clear_message():
    result = run(["manage.py", "check"], DJANGO_SECRET_KEY=None)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_debug_has_a_development_secret_key():
    result = run(["manage.py", "check"], DJANGO_SECRET_KEY=None, DJANGO_DEBUG="true")

    assert result.returncode == 0, result.stderr


def test_check_deploy_passes_in_a_production_environment():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY="pS8v-Yq2_wN4zR7tLx1cK9dF3gH6jM0bV5nQ8eT2uA4yW7iO1pZ3sD6fG9hJ2kL5",
        DJANGO_HTTPS="true",
        DJANGO_ALLOWED_HOSTS="audit.example.com",
        DATABASE_URL="postgres://app@db.internal:5432/audit",
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_migrate_leaves_the_sqlite_file_in_wal_mode(tmp_path):
    path = tmp_path / "fresh.sqlite3"
    result = run(["manage.py", "migrate", "--noinput"], DATABASE_URL=f"sqlite:///{path}")
    assert result.returncode == 0, result.stderr

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@requires_sqlite
@pytest.mark.django_db
def test_live_sqlite_connection_has_the_pragmas():
    with connection.cursor() as cursor:
        pragmas = {
            name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }

    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000, "foreign_keys": 1}
    assert connection.transaction_mode == "IMMEDIATE"


@requires_postgres
@pytest.mark.django_db
def test_live_postgres_connection_is_persistent_and_health_checked():
    with connection.cursor() as cursor:
        cursor.execute("SHOW application_name")
        assert cursor.fetchone() == ("auditlog",)

    assert connection.settings_dict["CONN_MAX_AGE"] == 600
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
