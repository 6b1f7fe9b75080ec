"""A real gunicorn for live tests, serving the test database that pytest-django created.

Tests that use it are `transaction=True`: what they write is committed, so gunicorn sees it,
and the tables are flushed afterwards.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import runtime_password, two_roles

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "live" / "logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(*, maintenance: bool = False) -> str:
    """The URL of the database this test session uses (pytest-django's test database): as the
    runtime role the service connects as, or as the tables' owner (the maintenance role)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    owner = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    runtime = None if maintenance else two_roles()
    auth = f"{runtime}:{runtime_password()}" if runtime else owner
    return (
        f"postgres://{auth}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )


class LiveServer:
    def __init__(self, name: str, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = LOG_DIR / f"{name}.log"
        self.env = env
        self.process = None

    def start(self, timeout=30.0):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--config", "config/gunicorn.conf.py"]
        command += ["--bind", f"127.0.0.1:{self.port}"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer /healthz in {timeout}s:\n{self.log()}")

    def stop(self, timeout=30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process and self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def request(self, method, path, body=None, headers=None, timeout=30.0):
        """One request on a fresh connection: (status, headers, parsed JSON or raw text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body) if isinstance(body, (dict, list)) else body
            conn.request(
                method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
            )
            response = conn.getresponse()
            raw = response.read().decode(errors="replace")
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
            return response.status, dict(response.getheaders()), parsed
        finally:
            conn.close()


def server_env(**overrides) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV_FILE": "/nonexistent",
        "DJANGO_SECRET_KEY": "live-test-" + "s3cr3t-" * 8,
        "DATABASE_URL": database_url(),
        # manage.py uses it for migrate, seal and purge; the web service never does.
        "DATABASE_MAINTENANCE_URL": database_url(maintenance=True) if two_roles() else None,
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


@pytest.fixture
def gunicorn_factory(request):
    """Start gunicorn(s) with extra environment; every one is stopped at teardown."""
    yield from servers_started(request, LiveServer)


def servers_started(request, make):
    """For a fixture: yield start(**env), which starts make(name, server_env(**env)) named
    after the test; every server started is stopped at teardown."""
    servers = []

    def start(**env):
        name = request.node.name.replace("/", "_") + (f"-{len(servers)}" if servers else "")
        server = make(name, server_env(**env))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gunicorn(gunicorn_factory):
    return gunicorn_factory()
