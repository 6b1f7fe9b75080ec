"""A streaming replica of this suite's PostgreSQL for live tests: pg_basebackup of the running
cluster into a temporary directory, started with pg_ctl on a free loopback port as the postgres
OS user. The main cluster is never stopped or restarted; the only change to it is the
pg_hba.conf rule that lets a replication connection in from 127.0.0.1 (added once, reloaded)."""

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from django.db import connection

from tests.live.conftest import LOG_DIR, free_port

REPLICATION_RULE = "host replication all 127.0.0.1/32 trust"
SUPERUSER = "postgres"  # the test machine's: trust on the loopback
# Hot standby refuses to start with less of these than the primary has.
PRIMARY_LIMITS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def primary_connect(dbname: str = "postgres") -> psycopg.Connection:
    """The primary, as its superuser (the hba file, the WAL position, the replication user)."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=SUPERUSER,
        dbname=dbname,
        autocommit=True,
    )


def bin_dir() -> Path:
    with primary_connect() as conn:
        major = conn.execute("SHOW server_version_num").fetchone()[0][:2]
    return Path(f"/usr/lib/postgresql/{major}/bin")


def not_root() -> bool:
    """pg_basebackup and pg_ctl run as the postgres OS user, which needs root (runuser)."""
    return os.geteuid() != 0


def missing_tools() -> list[str]:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return ["the postgres OS user"]
    tools = [bin_dir() / "pg_basebackup", bin_dir() / "pg_ctl", Path("/usr/sbin/runuser")]
    return [str(tool) for tool in tools if not tool.exists()]


def _as_postgres(*command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True, timeout=timeout
    )


class StreamingReplica:
    def __init__(self, name: str):
        self.name = name
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="auditlog-replica-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgresql.log"
        self.bin = bin_dir()

    def start(self) -> "StreamingReplica":
        with primary_connect() as primary:
            self._check_primary(primary)
            limits = {name: primary.execute(f"SHOW {name}").fetchone()[0] for name in PRIMARY_LIMITS}
            port = str(primary.info.port)
        shutil.chown(self.dir, "postgres")
        self.dir.chmod(0o700)
        command = [str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", port, "-U", SUPERUSER]
        command += ["-D", str(self.data), "-R", "-X", "stream", "--checkpoint=fast"]
        for attempt in range(10):  # the reloaded pg_hba.conf applies to connections made after
            done = _as_postgres(*command)
            if done.returncode == 0:
                break
            if attempt == 9 or "pg_hba.conf" not in done.stderr:
                raise RuntimeError(f"pg_basebackup failed: {done.stderr}")
            time.sleep(0.3)
        settings = {
            **limits,
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": f"'{self.dir}'",
            "hot_standby": "on",
            "shared_buffers": "32MB",
        }
        (self.data / "postgresql.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        (self.data / "pg_ident.conf").write_text("")
        for path in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.chown(self.data / path, "postgres")
        self._pg_ctl("start", "-l", str(self.log_path))
        self.wait_caught_up()
        return self

    def _check_primary(self, primary: psycopg.Connection) -> None:
        wal_level = primary.execute("SHOW wal_level").fetchone()[0]
        senders = int(primary.execute("SHOW max_wal_senders").fetchone()[0])
        if wal_level == "minimal" or senders == 0:
            raise RuntimeError(f"the primary cannot stream: wal_level={wal_level}, max_wal_senders={senders}")
        hba = Path(primary.execute("SHOW hba_file").fetchone()[0])
        text = hba.read_text()
        if REPLICATION_RULE not in text.splitlines():
            # First: the first rule that matches decides, and a later line would lose to any
            # replication rule already there.
            hba.write_text(f"# auditlog's replica test (tests/live/replica.py)\n{REPLICATION_RULE}\n{text}")
            primary.execute("SELECT pg_reload_conf()")

    def _pg_ctl(self, *args: str, timeout: float = 120) -> None:
        done = _as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[0]} failed: {done.stdout}{done.stderr}\n{self.log()}")

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def wait_caught_up(self, timeout: float = 60.0) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        with primary_connect() as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(psycopg.OperationalError), self.connect() as conn:
                if conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()[0]:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not catch up in {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", mode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def remove(self) -> None:
        """Stop it if it runs (killed, if pg_ctl cannot), keep its log in tests/live/logs, delete
        everything else."""
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
                time.sleep(1)
        finally:
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            (LOG_DIR / f"replica-{self.name}.log").write_text(self.log())
            shutil.rmtree(self.dir, ignore_errors=True)
