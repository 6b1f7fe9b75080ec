#!/usr/bin/env python3
"""Serve auditlog the way production does: nginx in front of gunicorn, in one command.

Starts gunicorn (config/gunicorn.conf.py) on a loopback port, renders deploy/nginx.conf into a
runtime directory and starts Debian's nginx in front of it. nginx buffers whole requests and
responses, so slow or hostile clients cost an nginx connection, never a gunicorn thread.
Prints one line once nginx answers GET /healthz with 200. SIGTERM or SIGINT stops nginx
(gracefully: requests in flight finish), then gunicorn, and exits 0; if either dies on its own,
the other is stopped and the exit status is 1.

Standard library only. Tests import it (tests/live/test_nginx.py) for render_config() and
nginx_command(), so what they prove is what ships.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import http.client
import os
import pwd
import resource
import shutil
import signal
import socket
import stat
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).resolve().with_name("nginx.conf")
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_SERVER_NAME = "localhost"
DEFAULT_WORKER_USER = "nobody"
DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024  # AUDITLOG_MAX_BATCH_BYTES' default in config/settings.py
# What the app should know when nginx is in front of it (docs/deploying.md), unless set.
PROXY_ENV = {"AUDITLOG_TRUSTED_PROXIES": "1", "DJANGO_BEHIND_PROXY": "true"}
NGINX_STOP_TIMEOUT = 15.0  # worker_shutdown_timeout (10 s in nginx.conf), plus a margin
POLL_SECONDS = 0.1


class ConfigTemplate(string.Template):
    """Only ${UPPER_CASE} is a placeholder: nginx's own $variables pass through untouched."""

    flags = 0
    pattern = r"""
    \$(?:
        \{(?P<braced>[A-Z][A-Z0-9_]*)\}
      | (?P<escaped>(?!))
      | (?P<named>(?!))
      | (?P<invalid>(?!))
    )
    """


def render_config(
    *,
    listen: str,
    upstream: str,
    runtime_dir: Path | str,
    max_body_size: str = "8m",
    server_name: str = DEFAULT_SERVER_NAME,
    user_directive: str = "",
    open_files: int | None = None,
) -> str:
    """deploy/nginx.conf with its placeholders filled in; every placeholder must be given.
    `open_files` (per nginx worker) defaults to 65,536, or this machine's hard limit if lower:
    a worker that is not root cannot go past it."""
    template = ConfigTemplate(TEMPLATE.read_text())
    if open_files is None:
        open_files = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    values = {
        "OPEN_FILES": str(open_files),
        "LISTEN": listen,
        "UPSTREAM": upstream,
        "RUNTIME_DIR": str(runtime_dir),
        "MAX_BODY_SIZE": max_body_size,
        "SERVER_NAME": server_name,
        "USER_DIRECTIVE": user_directive,
    }
    expected = set(template.get_identifiers())
    if expected != values.keys():
        raise ValueError(f"{TEMPLATE}: placeholders {sorted(expected)} but values for {sorted(values)}")
    return template.substitute(values)


def write_config(runtime_dir: Path, **values) -> Path:
    path = runtime_dir / "nginx.conf"
    path.write_text(render_config(runtime_dir=runtime_dir, **values))
    return path


def nginx_command(nginx: str, runtime_dir: Path) -> list[str]:
    return [nginx, "-p", f"{runtime_dir}/", "-c", str(runtime_dir / "nginx.conf"), "-g", "daemon off;"]


def find_nginx() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def user_directive(worker_user: str) -> str:
    """`user U G;` when nginx will start as root (its workers then drop to U), else nothing."""
    if os.geteuid() != 0:
        return ""
    entry = pwd.getpwnam(worker_user)
    return f"user {worker_user} {grp.getgrgid(entry.pw_gid).gr_name};"


def _traversable(path: Path, entry: pwd.struct_passwd) -> bool:
    info = path.stat()
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    if info.st_uid == entry.pw_uid:
        bit = stat.S_IXUSR
    elif info.st_gid in groups:
        bit = stat.S_IXGRP
    else:
        bit = stat.S_IXOTH
    return bool(info.st_mode & bit)


def prepare_runtime_dir(runtime_dir: Path, worker_user: str) -> None:
    """Create it; as root, make sure nginx's unprivileged workers can reach the temp dirs in it.

    The master creates those temp dirs and chowns them to the worker user; the workers only
    need to traverse RUNTIME_DIR and its parents. We add the execute bit to RUNTIME_DIR (mode
    0711: nothing in it is listed) and refuse a parent they cannot cross, rather than let
    the first request body that spills to disk fail with a 500.
    """
    runtime_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(worker_user)
    if not _traversable(runtime_dir, entry):
        runtime_dir.chmod(stat.S_IMODE(runtime_dir.stat().st_mode) | 0o111)
    for parent in runtime_dir.parents:
        if not _traversable(parent, entry):
            raise SystemExit(
                f"serve.py: nginx's workers run as {worker_user!r} and cannot enter {parent}, so they "
                f"could not use the temp directories in {runtime_dir}. Choose a --runtime-dir they "
                "can reach (the default is under the system temp dir) or another --worker-user."
            )


def read_env_file() -> dict[str, str]:
    """KEY=VALUE lines of the .env the app reads (DJANGO_ENV_FILE, default ROOT/.env)."""
    path = Path(os.environ.get("DJANGO_ENV_FILE") or ROOT / ".env")
    values = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("export "):
                line = line[len("export ") :].strip()
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip().strip("'\"")
    return values


def max_body_size(settings: dict[str, str]) -> str:
    """client_max_body_size: the API's largest body, as the app computes it (bytes, nginx syntax)."""
    limit = DEFAULT_MAX_BATCH_BYTES
    with contextlib.suppress(KeyError, ValueError):
        limit = int(settings["AUDITLOG_MAX_BATCH_BYTES"])
    with contextlib.suppress(KeyError, ValueError):
        limit = max(limit, int(settings["AUDITLOG_MAX_EVENT_BYTES"]))
    for unit, size in (("m", 1024 * 1024), ("k", 1024)):
        if limit % size == 0:
            return f"{limit // size}{unit}"
    return str(limit)


def gunicorn_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment, plus what the app must know behind nginx (unless set in it or .env)."""
    env = dict(os.environ)
    for name, value in PROXY_ENV.items():
        if name not in settings:
            env[name] = value
    return env


def probe_address(listen: str) -> tuple[str, int]:
    """Where to reach nginx's listen address ("[::]:8080", "0.0.0.0:80", "8080") from here."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        host = ""
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, [IPV6]:PORT or PORT")
    if host in ("", "*", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def probe(host: str, port: int, server_name: str, timeout: float = 2.0) -> int | str:
    """GET /healthz: the status, or why there was none."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz", headers={"Host": server_name})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        return repr(exc)
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _set_parent_death_signal():
    """In the child: get SIGTERM if serve.py itself dies (even by SIGKILL), so nothing is orphaned."""
    with contextlib.suppress(Exception):
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


try:
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except (ImportError, OSError):
    _LIBC = None


class Child:
    def __init__(self, name: str, command: list[str], **popen):
        self.name = name
        # Its own session: a Ctrl-C in the terminal reaches serve.py only, which stops the
        # children in order (nginx first) instead of both at once.
        self.process = subprocess.Popen(
            command,
            start_new_session=True,
            preexec_fn=_set_parent_death_signal if _LIBC else None,
            **popen,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the child and the workers it started (its process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


class Server:
    def __init__(self, args: argparse.Namespace, nginx: str, runtime_dir: Path):
        self.args = args
        self.nginx_path = nginx
        self.runtime_dir = runtime_dir
        self.gunicorn_port = args.gunicorn_port or free_port()
        self.signals: list[int] = []
        self.gunicorn: Child | None = None
        self.nginx: Child | None = None

    def on_signal(self, signum, _frame) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        settings = read_env_file() | dict(os.environ)
        write_config(
            self.runtime_dir,
            listen=self.args.listen,
            upstream=f"127.0.0.1:{self.gunicorn_port}",
            max_body_size=max_body_size(settings),
            server_name=self.args.server_name,
            user_directive=user_directive(self.args.worker_user),
        )
        command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--config", "config/gunicorn.conf.py"]
        command += ["--bind", f"127.0.0.1:{self.gunicorn_port}"]
        try:
            self.gunicorn = Child("gunicorn", command, cwd=ROOT, env=gunicorn_env(settings))
            status = self.start_and_supervise()
        finally:
            self.stop()
        return status

    def start_and_supervise(self) -> int:
        """gunicorn until it answers, then nginx until it answers; then watch both. The exit status."""
        deadline = time.monotonic() + self.args.startup_timeout
        status = self.wait_healthy("gunicorn", "127.0.0.1", self.gunicorn_port, deadline)
        if status is not None:
            return status
        self.nginx = Child("nginx", nginx_command(self.nginx_path, self.runtime_dir), cwd=self.runtime_dir)
        status = self.wait_healthy("nginx", *probe_address(self.args.listen), deadline)
        if status is not None:
            return status
        print(
            f"auditlog: serving http://{self.args.listen} (nginx pid {self.nginx.pid}) -> gunicorn "
            f"127.0.0.1:{self.gunicorn_port} (pid {self.gunicorn.pid}); logs in {self.runtime_dir}",
            flush=True,
        )
        while True:
            if self.signals:
                return 0
            if self.died():
                return 1
            time.sleep(POLL_SECONDS)

    def wait_healthy(self, name: str, host: str, port: int, deadline: float) -> int | None:
        """None once GET /healthz answers 200; else the exit status (a signal, a death, the deadline)."""
        while (answer := probe(host, port, self.args.server_name)) != 200:
            if self.signals:
                return 0
            if self.died():
                return 1
            if time.monotonic() > deadline:
                timeout = self.args.startup_timeout
                self.say(f"{name} did not answer GET /healthz with 200 within {timeout:g} s (last: {answer})")
                if name == "nginx":
                    self.say_nginx_errors()
                return 1
            time.sleep(POLL_SECONDS)
        return None

    def died(self) -> bool:
        for child in (self.gunicorn, self.nginx):
            if child and not child.running():
                after = "; stopping the other" if self.nginx is not None else ""
                self.say(f"{child.name} exited with status {child.process.returncode}{after}")
                if child is self.nginx:
                    self.say_nginx_errors()
                return True
        return False

    def stop(self) -> None:
        """nginx first (no new requests; those in flight finish), then gunicorn; both gracefully."""
        graceful = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or 30)
        if self.nginx:
            self.stop_child(self.nginx, signal.SIGQUIT, NGINX_STOP_TIMEOUT)
        if self.gunicorn:
            self.stop_child(self.gunicorn, signal.SIGTERM, graceful + 5)

    def stop_child(self, child: Child, signum: int, timeout: float) -> None:
        """Ask politely; SIGKILL its process group past `timeout` or on a second SIGINT/SIGTERM."""
        child.signal(signum)
        deadline = time.monotonic() + timeout
        while child.running():
            if time.monotonic() > deadline or len(self.signals) >= 2:
                self.say(f"{child.name} did not stop in time: killing it")
                break
            time.sleep(POLL_SECONDS)
        child.kill_group()  # also reaps it; and any worker left behind

    def say(self, message: str) -> None:
        print(f"serve.py: {message}", file=sys.stderr, flush=True)

    def say_nginx_errors(self, lines: int = 10) -> None:
        with contextlib.suppress(OSError):
            tail = (self.runtime_dir / "error.log").read_text(errors="replace").splitlines()[-lines:]
            if tail:
                self.say("last lines of nginx's error.log:\n  " + "\n  ".join(tail))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy/serve.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve auditlog as production does: nginx (deploy/nginx.conf) in front of gunicorn.",
        epilog="""\
gunicorn listens on loopback only (config/gunicorn.conf.py: WEB_CONCURRENCY, GUNICORN_THREADS ...)
and gets AUDITLOG_TRUSTED_PROXIES=1 and DJANGO_BEHIND_PROXY=true unless the environment or .env
sets them. nginx buffers whole requests and responses (client_max_body_size follows
AUDITLOG_MAX_BATCH_BYTES), times out slow clients, and answers its own errors in the API's JSON
shape. Its pid file, logs (access.log, error.log) and temp files go to the runtime directory;
nothing is written to /etc or /var. Started as root, nginx's workers run as --worker-user.

Once nginx answers GET /healthz with 200, one line says where it listens. SIGTERM or Ctrl-C
stops nginx gracefully, then gunicorn, and exits 0 (a second Ctrl-C kills them). If either one
dies, the other is stopped and the exit status is 1.

examples:
  make serve                                  # after `make migrate`: http://127.0.0.1:8080
  AUDITLOG_LISTEN=0.0.0.0:8080 make serve
  .venv/bin/python deploy/serve.py --listen 127.0.0.1:9000 --runtime-dir /tmp/auditlog-nginx""",
    )
    env = os.environ.get
    parser.add_argument(
        "--listen",
        default=env("AUDITLOG_LISTEN") or DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"nginx's listen address (env AUDITLOG_LISTEN; default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--gunicorn-port",
        type=int,
        default=int(env("AUDITLOG_GUNICORN_PORT") or 0),
        metavar="PORT",
        help="gunicorn's port on 127.0.0.1 (env AUDITLOG_GUNICORN_PORT; default: a free one)",
    )
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        default=env("AUDITLOG_RUNTIME_DIR") or None,
        metavar="DIR",
        help="nginx.conf as rendered, pid file, logs, temp files (env AUDITLOG_RUNTIME_DIR; "
        "default: a fresh temporary directory, removed at exit: give one to keep the logs)",
    )
    parser.add_argument(
        "--server-name",
        default=DEFAULT_SERVER_NAME,
        help="nginx's server_name, and the Host of the health probe: one of DJANGO_ALLOWED_HOSTS "
        f"(default {DEFAULT_SERVER_NAME})",
    )
    parser.add_argument(
        "--nginx",
        default=env("NGINX") or None,
        metavar="PATH",
        help="the nginx binary (env NGINX; default: nginx on PATH, else /usr/sbin/nginx)",
    )
    parser.add_argument(
        "--worker-user",
        default=DEFAULT_WORKER_USER,
        metavar="USER",
        help=f"when started as root, nginx's workers run as this user (default {DEFAULT_WORKER_USER})",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up if nginx does not answer /healthz with 200 within this time (default 60)",
    )
    args = parser.parse_args(argv)
    try:
        probe_address(args.listen)
    except ValueError as error:
        parser.error(str(error))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(args.worker_user)
        except KeyError:
            parser.error(f"--worker-user {args.worker_user!r}: no such user")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    nginx = args.nginx or find_nginx()
    if not nginx:
        print(
            "serve.py: nginx not found: install it (Debian: apt-get install nginx) or pass --nginx",
            file=sys.stderr,
        )
        return 2
    temporary = args.runtime_dir is None
    runtime_dir = Path(args.runtime_dir or tempfile.mkdtemp(prefix="auditlog-serve-")).resolve()
    try:
        prepare_runtime_dir(runtime_dir, args.worker_user)
        return Server(args, nginx, runtime_dir).run()
    finally:
        if temporary:
            shutil.rmtree(runtime_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
