"""PostgreSQL faults for live tests: kill backends, restart the server, hold locks, count connections."""

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
from django.db import connection


def admin_connect(dbname="postgres") -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
        application_name="auditlog-test-admin",
    )


def own_backend_pid() -> int:
    """The backend of this test process's Django connection (never killed or counted)."""
    connection.ensure_connection()
    return connection.connection.info.backend_pid


def service_backends(admin: psycopg.Connection, exclude: int) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'auditlog' AND pid <> %s",
        [connection.settings_dict["NAME"], exclude],
    ).fetchall()
    return [pid for (pid,) in rows]


def terminate_service_backends(admin: psycopg.Connection, exclude: int, timeout=10.0) -> int:
    """Kill every service backend and wait until they are gone; return how many there were."""
    pids = service_backends(admin, exclude)
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + timeout
    while set(pids) & set(service_backends(admin, exclude)):
        if time.monotonic() > deadline:
            raise TimeoutError("killed backends did not exit")
        time.sleep(0.01)
    return len(pids)


def _cluster() -> list[str] | None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"] if versions else None


def can_restart() -> bool:
    return _cluster() is not None and os.geteuid() == 0


def restart_server() -> None:
    subprocess.run([*_cluster(), "restart"], check=True, capture_output=True, timeout=120)


def ensure_running() -> None:
    """Always leave PostgreSQL running, whatever a test did."""
    cluster = _cluster()
    if cluster is None:
        return
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run([*cluster, "status"], check=True, capture_output=True, timeout=30)
        return
    subprocess.run([*cluster, "start"], check=True, capture_output=True, timeout=120)
