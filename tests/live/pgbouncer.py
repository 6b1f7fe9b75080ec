"""Debian's PgBouncer in transaction mode on a free loopback port, in front of this suite's
PostgreSQL test database, for live tests. Its connect_query sets the service's server-side
bounds on every server connection, as deploy/pgbouncer.ini does."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings
from django.db import connection

from tests.live.conftest import LOG_DIR, free_port


def available() -> bool:
    return shutil.which("pgbouncer") is not None or Path("/usr/sbin/pgbouncer").exists()


class PgBouncer:
    def __init__(self, name: str, users: list[str], *, pool_size: int = 8):
        self.name = name
        self.port = free_port()
        self.users = users
        self.pool_size = pool_size
        self.dir = Path(tempfile.mkdtemp(prefix="auditlog-pgbouncer-"))
        self.log_path = LOG_DIR / f"pgbouncer-{name}.log"

    def start(self, timeout: float = 15.0) -> "PgBouncer":
        db = connection.settings_dict
        bounds = (
            f"SET statement_timeout = {round(settings.DATABASE_STATEMENT_TIMEOUT * 1000)}; "
            f"SET lock_timeout = {round(settings.DATABASE_LOCK_TIMEOUT * 1000)}; "
            "SET idle_in_transaction_session_timeout = "
            f"{round(settings.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT * 1000)}"
        )
        (self.dir / "users.txt").write_text("".join(f'"{user}" ""\n' for user in self.users))
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{db['NAME']} = host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} dbname={db['NAME']} "
            f"connect_query='{bounds}'\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmax_client_conn = 500\n"
            "server_reset_query =\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        command = [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", "-d"]
        if os.geteuid() == 0:  # it refuses to run as root
            command += ["-u", "postgres"]
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, "postgres")
            for path in self.dir.iterdir():
                shutil.chown(path, "postgres")
        subprocess.run([*command, str(self.dir / "pgbouncer.ini")], check=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(database_user=self.users[0]), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PgBouncer did not answer:\n{self.log()}") from None
                time.sleep(0.1)

    def url(self, base: str | None = None, *, database_user: str | None = None) -> str:
        """`base` (a postgres:// URL) with PgBouncer's host and port instead of the server's."""
        if base is None:
            db = connection.settings_dict
            return f"postgres://{database_user}@127.0.0.1:{self.port}/{db['NAME']}"
        parts = urlsplit(base)
        auth = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{self.port}"))

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        pid_file = self.dir / "pgbouncer.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text(self.log())
        shutil.rmtree(self.dir, ignore_errors=True)
