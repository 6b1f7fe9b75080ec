"""What the benchmarks and the load test share: a database, manage.py, a gunicorn, /proc readings.

Everything runs on this machine and talks to 127.0.0.1 only.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "loadtest" / "out"
SECRET_KEY = "loadtest-secret-key-" + "x" * 40
POSTGRES_BASE = os.environ.get("BENCH_POSTGRES_BASE", "postgres://postgres@127.0.0.1:5432")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WORKERS, THREADS = 2, 4  # the Server's gunicorn, unless a caller overrides them


def env_for(database_url: str, **extra: str) -> dict:
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV_FILE": "/nonexistent",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        **extra,
    }


def manage(database_url: str, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env_for(database_url, **env),
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


# A benchmark's setup (loading, ANALYZE, copying a partition) outlasts a request's bounds.
SETUP_BOUNDS = {"DATABASE_STATEMENT_TIMEOUT": "900", "DATABASE_CLIENT_TIMEOUT": "910"}


def django_shell(database_url: str, code: str, **env: str) -> dict:
    """Run code in `manage.py shell`; it prints one JSON line last."""
    output = manage(database_url, "shell", "-v", "0", "-c", code, **env)
    return json.loads(output.strip().splitlines()[-1])


def postgres_reachable() -> bool:
    try:
        psycopg.connect(f"{POSTGRES_BASE}/postgres", connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def postgres_database(name: str, *, fresh: bool) -> str:
    """Return the URL of a PostgreSQL database, created (and emptied first if `fresh`)."""
    with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_BASE}/{name}"


def sqlite_database(name: str, *, fresh: bool) -> str:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.sqlite3"
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn with config/gunicorn.conf.py, as in production, on a free loopback port."""

    def __init__(self, database_url: str, log_name: str, app: str = "config.wsgi", **extra_env: str):
        OUT.mkdir(exist_ok=True)
        self.port = free_port()
        sizing = {"WEB_CONCURRENCY": str(WORKERS), "GUNICORN_THREADS": str(THREADS)}
        env = env_for(database_url, **sizing, **extra_env)
        command = [sys.executable, "-m", "gunicorn", app, "-c", "config/gunicorn.conf.py"]
        self.log = open(OUT / f"{log_name}.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"gunicorn did not start; see {self.log.name}")

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def worker_pids(self) -> list[int]:
        return children(self.process.pid)

    def stop(self):
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def cpu_snapshot(pids) -> dict[int, float]:
    """User + system CPU seconds of each process so far (from /proc/<pid>/stat)."""
    snapshot = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        snapshot[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return snapshot


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots; a process that started in between counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine: backends and background workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
