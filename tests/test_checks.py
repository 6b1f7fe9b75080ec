"""One test per check id, plus auditlog_dbcheck on good and broken setups."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from auditlog import checks
from tests.conftest import requires_postgres

ROOT = Path(__file__).resolve().parent.parent
GOOD_SQLITE = {
    "ENGINE": checks.SQLITE,
    "ATOMIC_REQUESTS": False,
    "OPTIONS": {"timeout": 5, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL"},
}
GOOD_POSTGRES = {"ENGINE": checks.POSTGRESQL, "CONN_MAX_AGE": 600, "CONN_HEALTH_CHECKS": True, "OPTIONS": {}}
LIMITS = checks.ServerLimits(max_connections=100, reserved=3, idle_session_timeout_seconds=0)
SMALL = checks.Capacity(instances=1, workers=2, threads=4, pool_max_size=None)


def ids(problems):
    return [problem.id for problem in problems]


def sqlite(**changes):
    options = GOOD_SQLITE["OPTIONS"] | changes.pop("OPTIONS", {})
    return GOOD_SQLITE | changes | {"OPTIONS": options}


def test_good_sqlite_setup_has_no_problems():
    assert checks.sqlite_problems("default", GOOD_SQLITE) == []


def test_e001_sqlite_without_wal():
    assert ids(checks.sqlite_problems("default", sqlite(OPTIONS={"init_command": ""}))) == ["auditlog.E001"]


def test_e002_sqlite_without_busy_timeout():
    assert ids(checks.sqlite_problems("default", sqlite(OPTIONS={"timeout": 0}))) == ["auditlog.E002"]


def test_e002_busy_timeout_pragma_replaces_the_timeout_option():
    database = sqlite(OPTIONS={"timeout": 5, "init_command": "PRAGMA journal_mode=WAL;PRAGMA busy_timeout=0"})

    assert ids(checks.sqlite_problems("default", database)) == ["auditlog.E002"]


@pytest.mark.parametrize("mode", [None, "DEFERRED"])
def test_e003_sqlite_deferred_transactions(mode):
    assert ids(checks.sqlite_problems("default", sqlite(OPTIONS={"transaction_mode": mode}))) == [
        "auditlog.E003"
    ]


def test_e004_atomic_requests_on_sqlite():
    assert ids(checks.sqlite_problems("default", sqlite(ATOMIC_REQUESTS=True))) == ["auditlog.E004"]


def test_e005_persistent_postgres_without_health_checks():
    database = GOOD_POSTGRES | {"CONN_HEALTH_CHECKS": False}

    assert ids(checks.postgres_problems("default", database)) == ["auditlog.E005"]


def test_e005_not_raised_without_persistent_connections():
    database = GOOD_POSTGRES | {"CONN_HEALTH_CHECKS": False, "CONN_MAX_AGE": 0}

    assert checks.postgres_problems("default", database) == []


def test_e006_pool_with_conn_max_age():
    database = GOOD_POSTGRES | {"OPTIONS": {"pool": {"max_size": 4}}}

    assert ids(checks.postgres_problems("default", database)) == ["auditlog.E006"]


def test_w002_client_timeout_not_above_the_statement_timeout():
    problems = checks.timeout_problems("default", statement=3, client=3)

    assert ids(problems) == ["auditlog.W002"]


def test_w002_not_raised_for_the_defaults_or_without_a_statement_timeout():
    assert checks.timeout_problems("default", statement=3, client=4) == []
    assert checks.timeout_problems("default", statement=0, client=4) == []


def test_w001_conn_max_age_beyond_idle_session_timeout():
    limits = checks.ServerLimits(100, 3, idle_session_timeout_seconds=300)

    assert ids(checks.server_problems("default", GOOD_POSTGRES, limits, SMALL)) == ["auditlog.W001"]


def test_w001_not_raised_when_conn_max_age_is_shorter():
    limits = checks.ServerLimits(100, 3, idle_session_timeout_seconds=900)

    assert checks.server_problems("default", GOOD_POSTGRES, limits, SMALL) == []


@pytest.mark.parametrize(
    "capacity",
    [
        checks.Capacity(instances=1, workers=25, threads=4, pool_max_size=None),
        checks.Capacity(instances=3, workers=4, threads=8, pool_max_size=10),
    ],
    ids=["threads", "pool"],
)
def test_e007_connection_budget_over_max_connections(capacity):
    assert ids(checks.server_problems("default", GOOD_POSTGRES, LIMITS, capacity)) == ["auditlog.E007"]


def test_e007_budget_exactly_at_the_limit_passes():
    capacity = checks.Capacity(instances=1, workers=97, threads=1, pool_max_size=None)

    assert checks.server_problems("default", GOOD_POSTGRES, LIMITS, capacity) == []


def test_capacity_reads_gunicorn_conf(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "5")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    assert checks.capacity(GOOD_POSTGRES) == checks.Capacity(1, 3, 5, None)
    # Reading the file has no effect: its metrics directory is made by gunicorn's hook only.
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert checks.capacity(GOOD_POSTGRES | {"OPTIONS": {"pool": {"max_size": 6}}}).connections == 18


@requires_postgres
@pytest.mark.django_db
def test_server_limits_are_read_from_the_server():
    limits = checks.server_limits("default")

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        assert limits.max_connections == int(cursor.fetchone()[0])
    assert limits.reserved >= 1


@pytest.mark.django_db
def test_default_setup_passes_manage_py_check_with_database_checks():
    call_command("check", "--database", "default", "--fail-level", "WARNING")


def dbcheck(**env):
    environment = {
        "PATH": os.environ["PATH"],
        "DJANGO_ENV_FILE": "/nonexistent",
        "DJANGO_SECRET_KEY": "k" * 60,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "auditlog_dbcheck"],
        cwd=ROOT,
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dbcheck_on_the_default_sqlite_setup_exits_zero(tmp_path):
    result = dbcheck(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["setting", "value", "verdict"]
    assert any(line.split()[:3] == ["journal_mode", "wal", "ok"] for line in lines)
    assert any(line.split()[:2] == ["transaction_mode", "IMMEDIATE"] for line in lines)
    assert "No problems found." in result.stdout


def test_dbcheck_names_a_broken_sqlite_setup_and_exits_non_zero(tmp_path):
    result = dbcheck(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3", SQLITE_BUSY_TIMEOUT="0")

    assert result.returncode == 1
    assert any(
        line.split()[:4] == ["busy_timeout", "0", "ms", "ERROR"] for line in result.stdout.splitlines()
    )
    assert "auditlog.E002: SQLite has no busy timeout" in result.stdout
    assert "auditlog.E002" in result.stderr


@requires_postgres
def test_dbcheck_names_persistent_connections_without_health_checks():
    url = "postgres://{USER}@{HOST}:{PORT}/postgres".format(**connection.settings_dict)

    result = dbcheck(DATABASE_URL=url, CONN_HEALTH_CHECKS="false")

    assert result.returncode == 1
    assert "auditlog.E005: Persistent PostgreSQL connections without health checks" in result.stdout


@requires_postgres
def test_dbcheck_on_the_default_postgres_setup_exits_zero():
    url = "postgres://{USER}@{HOST}:{PORT}/postgres".format(**connection.settings_dict)

    result = dbcheck(DATABASE_URL=url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No problems found." in result.stdout
