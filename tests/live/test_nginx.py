"""nginx in front of gunicorn, exactly as `deploy/serve.py` runs it (and `make serve`).

Slow clients cost nginx a connection and gunicorn nothing; nginx's own errors are JSON in the
API's shape; the X-Forwarded-For the app sees is the address that connected, never what the
client wrote. Skipped when nginx is not installed, except with CI=true, where that fails.
"""

import contextlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from auditlog.models import ActionLog
from tests.conftest import BATCH_URL, EVENTS_URL, make_event
from tests.live.conftest import LOG_DIR, ROOT, LiveServer, free_port, servers_started

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# How long the slow clients are held against nginx (AUDITLOG_NGINX_HOLD_SECONDS to tune).
HOLD_SECONDS = float(os.environ.get("AUDITLOG_NGINX_HOLD_SECONDS") or 30)
SLOW_HEADER_CLIENTS = 64
SLOW_BODY_CLIENTS = 64
STALLED_BODY_CLIENTS = 8  # send part of the body, then nothing: cut at client_body_timeout
SLOW_BODY_LENGTH = 50 * 1024
POSTS = 200
MAX_POST_SECONDS = 5.0  # the slowest of the 200 POSTs made while the slow clients are held
CLIENT_TIMEOUT = 10  # client_header_timeout and client_body_timeout in deploy/nginx.conf
MAX_BATCH_BYTES = 8 * 1024 * 1024


def _load_serve():
    """deploy/serve.py as a module (deploy/ is not a package): its render_config, nginx_command ..."""
    spec = importlib.util.spec_from_file_location("auditlog_deploy_serve", ROOT / "deploy" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve = _load_serve()


@pytest.fixture
def nginx_path() -> str:
    path = serve.find_nginx()
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("nginx is required when CI=true (Debian: apt-get install nginx)")
    pytest.skip("nginx is not installed (Debian: apt-get install nginx); with CI=true this fails")


class Served(LiveServer):
    """`deploy/serve.py` as a subprocess: nginx on `port`, in front of its own gunicorn."""

    READY = re.compile(r"auditlog: serving http://\S+ \(nginx pid (\d+)\) -> gunicorn \S+ \(pid (\d+)\)")

    def __init__(self, name: str, nginx: str, env: dict[str, str]):
        super().__init__(f"nginx-{name}", env)
        self.runtime_dir = LOG_DIR / f"nginx-{name}"
        self.nginx = nginx
        self.nginx_pid = self.gunicorn_pid = None

    def start(self, timeout=60.0):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
        command = [sys.executable, "deploy/serve.py", "--listen", f"127.0.0.1:{self.port}"]
        command += ["--runtime-dir", str(self.runtime_dir), "--nginx", self.nginx]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.READY.search(self.log())
            if ready:
                self.nginx_pid, self.gunicorn_pid = int(ready[1]), int(ready[2])
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"serve.py exited at start ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve.py was not ready in {timeout}s:\n{self.log()}")

    def stop(self, timeout=60.0) -> int | None:
        return super().stop(timeout)  # a SIGKILL past it: its children get SIGTERM (parent death)

    def nginx_errors(self) -> str:
        with contextlib.suppress(OSError):
            return (self.runtime_dir / "error.log").read_text(errors="replace")
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def served(request, nginx_path):
    """Start deploy/serve.py against the test database; every one is stopped at teardown."""
    yield from servers_started(request, lambda name, env: Served(name, nginx_path, env))


@pytest.fixture
def nginx_alone(request, nginx_path):
    """nginx as serve.py renders it, in front of an upstream of the test's choosing."""
    started = []

    def start(upstream: str) -> int:
        port = free_port()
        runtime_dir = LOG_DIR / f"nginx-{request.node.name}-alone"
        shutil.rmtree(runtime_dir, ignore_errors=True)
        serve.prepare_runtime_dir(runtime_dir, serve.DEFAULT_WORKER_USER)
        serve.write_config(
            runtime_dir,
            listen=f"127.0.0.1:{port}",
            upstream=upstream,
            user_directive=serve.user_directive(serve.DEFAULT_WORKER_USER),
        )
        log = open(runtime_dir / "stderr.log", "w")  # noqa: SIM115 - closed at teardown
        process = subprocess.Popen(
            serve.nginx_command(nginx_path, runtime_dir), stdout=log, stderr=subprocess.STDOUT
        )
        started.append((process, log))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return port
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen: {(runtime_dir / 'error.log').read_text(errors='replace')}")

    yield start
    for process, log in started:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def exchange(port: int, data: bytes, timeout=15.0) -> tuple[int, dict[str, str], object]:
    """Send raw bytes, read one response: (status, lower-cased headers, parsed JSON or text)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer (and stop reading) early
            sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        raw = response.read().decode(errors="replace")
        headers = {name.lower(): value for name, value in response.getheaders()}
    try:
        return response.status, headers, json.loads(raw)
    except ValueError:
        return response.status, headers, raw


def assert_json_error(status, headers, body, expected_status, code):
    assert status == expected_status, (status, body)
    assert headers["content-type"] == "application/json", (headers, body)
    assert isinstance(body, dict), body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body


class SlowClients:
    """Requests that never finish: one more byte a second on each connection, for as long as held.

    Header clients trickle an endless header line; body clients send complete headers (a bogus
    token, Content-Length 50 KiB) and then trickle the body; stalled clients send the headers
    and the start of the body, then nothing. A connection the server closes or answers is
    counted and replaced at once, so the same number stay open throughout.
    """

    PREFIX = {
        "header": b"POST /api/v1/events HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
        "body": (
            b"POST /api/v1/events HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer al_not-a-real-token\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {SLOW_BODY_LENGTH}\r\n\r\n".encode()
        ),
    }
    PREFIX["stalled"] = PREFIX["body"] + b'{"action": '
    BYTE = {"header": b"a", "body": b" ", "stalled": b""}

    def __init__(self, port: int):
        self.port = port
        self.conns: list[list] = []  # [kind, socket or None]
        self.closed_by_server = Counter()  # kind -> connections the server closed (or answered)
        self.answers = Counter()  # (kind, status line) of what the server said before closing
        self.failure: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)

    def _connect(self, kind: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(self.PREFIX[kind])
        sock.setblocking(False)
        return sock

    def start(self, headers: int, bodies: int, stalled: int) -> None:
        for kind, count in (("header", headers), ("body", bodies), ("stalled", stalled)):
            self.conns += [[kind, self._connect(kind)] for _ in range(count)]
        self.thread.start()

    def _trickle(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                for index, conn in enumerate(self.conns):
                    if self.stop.is_set():
                        return
                    self._poke(conn)
                    # Spread each round over a second rather than send 128 bytes at once.
                    self.stop.wait(max(0.0, started + (index + 1) / len(self.conns) - time.monotonic()))
        except BaseException as exc:  # re-raised by finish(), in the test's thread
            self.failure = exc

    def _poke(self, conn: list) -> None:
        kind, sock = conn
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            try:
                if self.BYTE[kind]:
                    sock.send(self.BYTE[kind])
                return
            except BlockingIOError:
                return
            except OSError:
                data = b""
        except OSError:
            data = b""
        if data:
            self.answers[(kind, data.split(b"\r\n", 1)[0].decode(errors="replace"))] += 1
        self.closed_by_server[kind] += 1
        sock.close()
        conn[1] = self._connect(kind)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for conn in self.conns:
            conn[1].close()
        assert not self.thread.is_alive(), "the slow-client thread did not stop"
        if self.failure:
            raise self.failure


class Producer:
    """One well-behaved client: POSTs paced over the hold, one keep-alive connection, timed."""

    def __init__(self, port: int, token: str, count: int, interval: float, deadline: float):
        self.port, self.count, self.interval, self.deadline = port, count, interval, deadline
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.posts: list[tuple[str, int | None, float, str]] = []  # key, status, seconds, id or error
        self.health: list[tuple[int | None, float]] = []
        self.conn = None

    def _send(self, method, path, body=None) -> tuple[int | None, float, object]:
        started = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2 * MAX_POST_SECONDS)
            self.conn.request(method, path, body=body, headers=self.headers)
            response = self.conn.getresponse()
            raw = response.read()
            return response.status, time.monotonic() - started, json.loads(raw)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.conn.close()
            self.conn = None
            return None, time.monotonic() - started, repr(exc)

    def run(self) -> None:
        started = time.monotonic()
        for n in range(self.count):
            time.sleep(max(0.0, started + n * self.interval - time.monotonic()))
            if time.monotonic() > self.deadline:  # bounded, whatever happens: the rest is unsent
                break
            key = f"nginx-slow-{n}"
            event = make_event(idempotency_key=key, actor={"id": str(n), "type": "user"})
            status, seconds, body = self._send("POST", EVENTS_URL, json.dumps(event))
            self.posts.append((key, status, seconds, body["id"] if status == 201 else str(body)))
            if n % 10 == 0:
                status, seconds, _ = self._send("GET", "/healthz")
                self.health.append((status, seconds))
        if self.conn:
            self.conn.close()


def write_summary(name: str, summary: dict) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"{name}.summary.json").write_text(json.dumps(summary, indent=2))


def test_slow_clients_held_against_nginx_do_not_slow_down_anyone_else(served, writer_key):
    key, token = writer_key
    test_started = time.monotonic()
    server = served(GUNICORN_ACCESSLOG="-")  # gunicorn's access log shows what reached it

    slow = SlowClients(server.port)
    slow.start(headers=SLOW_HEADER_CLIENTS, bodies=SLOW_BODY_CLIENTS, stalled=STALLED_BODY_CLIENTS)
    hold_started = time.monotonic()
    try:
        interval, deadline = HOLD_SECONDS * 0.9 / POSTS, hold_started + HOLD_SECONDS + 10
        producer = Producer(server.port, token, POSTS, interval=interval, deadline=deadline)
        producer.run()
        time.sleep(max(0.0, hold_started + HOLD_SECONDS - time.monotonic()))
        held = time.monotonic() - hold_started
    finally:
        slow.finish()
    exit_status = server.stop()

    latencies = [seconds for _, _, seconds, _ in producer.posts]
    gunicorn_lines = [line for line in server.log().splitlines() if '"POST /api/v1/events' in line]
    summary = {
        "hold_seconds": round(held, 1),
        "slow_header_clients": SLOW_HEADER_CLIENTS,
        "slow_body_clients": SLOW_BODY_CLIENTS,
        "stalled_body_clients": STALLED_BODY_CLIENTS,
        "slow_connections_closed_by_nginx": dict(slow.closed_by_server),
        "slow_answers": {f"{kind}: {line}": n for (kind, line), n in slow.answers.items()},
        "post_statuses": dict(Counter(status for _, status, _, _ in producer.posts)),
        "post_max_seconds": round(max(latencies), 3),
        "post_p50_seconds": round(statistics.median(latencies), 4),
        "healthz_statuses": dict(Counter(status for status, _ in producer.health)),
        "posts_reaching_gunicorn": len(gunicorn_lines),
        "rows_stored": ActionLog.objects.filter(source=key).count(),
        "serve_exit_status": exit_status,
        "test_seconds": round(time.monotonic() - test_started, 1),
    }
    write_summary("nginx-slow-clients", summary)
    print(json.dumps(summary, indent=2))

    failures = [post for post in producer.posts if post[1] != 201]
    assert not failures, (failures[:5], summary)
    assert len(producer.posts) == POSTS, summary
    assert max(latencies) < MAX_POST_SECONDS, summary
    assert {status for status, _ in producer.health} == {200}, summary
    # Exactly once, under the id each was acknowledged with.
    acked = {k: ident for k, _, _, ident in producer.posts}
    rows = ActionLog.objects.filter(source=key).values_list("idempotency_key", "uuid")
    assert {k: str(uuid) for k, uuid in rows} == acked
    assert ActionLog.objects.count() == POSTS
    # The slow clients were really held: nginx kept the body tricklers (a byte a second is
    # within client_body_timeout), cut the header tricklers at client_header_timeout and the
    # stalled bodies at client_body_timeout; none of them reached gunicorn, which saw the 200
    # POSTs and nothing else.
    assert slow.closed_by_server["body"] == 0, summary
    if HOLD_SECONDS > CLIENT_TIMEOUT + 2:
        assert slow.closed_by_server["header"] >= SLOW_HEADER_CLIENTS, summary
        assert slow.closed_by_server["stalled"] >= STALLED_BODY_CLIENTS, summary
    assert len(gunicorn_lines) == POSTS, summary
    assert all('" 201 ' in line for line in gunicorn_lines), gunicorn_lines[:5]
    # SIGTERM: both stopped, exit 0.
    assert exit_status == 0, server.log()
    assert not alive(server.nginx_pid) and not alive(server.gunicorn_pid)
    assert "Traceback" not in server.log()


def test_nginx_answers_its_own_errors_in_the_api_json_shape(served, writer_key):
    _, token = writer_key
    server = served()
    port = server.port
    auth = f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()

    # Over client_max_body_size (= AUDITLOG_MAX_BATCH_BYTES), declared: refused before the body.
    head = f"POST {BATCH_URL} HTTP/1.1\r\nHost: localhost\r\n".encode() + auth
    too_long = head + f"Content-Length: {MAX_BATCH_BYTES + 1}\r\n\r\n".encode() + b" " * 65536
    assert_json_error(*exchange(port, too_long), 413, "payload_too_large")

    # The same, chunked (no length declared): refused once 8 MiB have arrived.
    chunk = b" " * (1024 * 1024)
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + (b"100000\r\n" + chunk + b"\r\n") * 9
    assert_json_error(*exchange(port, chunked), 413, "payload_too_large")

    # A batch larger than client_body_buffer_size (64 KiB) is spooled to a temp file by an
    # unprivileged nginx worker (when run as root), and reaches the app whole.
    events = [make_event(idempotency_key=f"big-{n}", actor={"id": str(n)}) for n in range(400)]
    body = json.dumps({"events": events}).encode()
    assert len(body) > 64 * 1024
    request = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    status, _, answer = exchange(port, request)
    assert status == 200, answer
    assert {result["status"] for result in answer["results"]} == {201}
    assert ActionLog.objects.count() == 400

    # The request line over large_client_header_buffers: 414; a header line over it: 400.
    long_uri = b"GET /api/v1/events?actor_id=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert_json_error(*exchange(port, long_uri), 414, "bad_request")
    # Just under nginx's limit, over gunicorn's default one (4094): the app answers, in JSON.
    near_limit = b"GET /api/v1/events?actor_id=" + b"a" * 7900 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert_json_error(*exchange(port, near_limit), 401, "unauthorized")
    long_header = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"
    assert_json_error(*exchange(port, long_header), 400, "bad_request")
    # Malformed request line; both Content-Length and Transfer-Encoding (request smuggling).
    assert_json_error(*exchange(port, b"NOT HTTP\r\n\r\n"), 400, "bad_request")
    smuggle = head + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert_json_error(*exchange(port, smuggle), 400, "bad_request")
    # A transfer coding nginx does not know, an HTTP version it does not speak.
    gzip = head + b"Transfer-Encoding: gzip\r\n\r\n"
    assert_json_error(*exchange(port, gzip), 501, "bad_request")
    assert_json_error(
        *exchange(port, b"GET /healthz HTTP/2.0\r\nHost: localhost\r\n\r\n"), 505, "bad_request"
    )
    # The internal error locations cannot be requested from outside.
    internal = b"GET /__nginx_error/503 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert_json_error(*exchange(port, internal), 404, "not_found")

    # The app's own errors pass through untouched (not replaced by nginx).
    no_token = f"POST {EVENTS_URL} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    status, headers, answer = exchange(port, no_token)
    assert_json_error(status, headers, answer, 401, "unauthorized")
    assert headers["www-authenticate"].startswith("Bearer")

    assert "[alert]" not in server.nginx_errors() and "[crit]" not in server.nginx_errors()


def test_gunicorn_down_is_a_json_503_with_retry_after(nginx_alone):
    port = nginx_alone(f"127.0.0.1:{free_port()}")  # nothing listens there

    for method, path in (("POST", EVENTS_URL), ("GET", "/healthz")):
        request = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{{}}".encode()
        status, headers, body = exchange(port, request)
        assert_json_error(status, headers, body, 503, "service_unavailable")
        assert headers["retry-after"] == "1"


def test_serve_stops_nginx_and_fails_when_gunicorn_dies(served):
    server = served()
    os.killpg(server.gunicorn_pid, signal.SIGKILL)  # gunicorn and its workers (their own group)

    status = server.process.wait(30)

    assert status != 0
    assert "gunicorn exited" in server.log()
    assert not alive(server.nginx_pid)


class EchoHeaders(BaseHTTPRequestHandler):
    """Answers any request with the headers it received, as JSON lists."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        body = json.dumps(headers).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def test_x_forwarded_for_is_the_connecting_address_not_what_the_client_sent(nginx_alone):
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        port = nginx_alone(f"127.0.0.1:{upstream.server_address[1]}")
        forged = (
            b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX_Forwarded_For: 6.6.6.6\r\n"
            b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6\r\n"
            b"X-Real-IP: 6.6.6.6\r\nConnection: close\r\n"
        )
        request = f"POST {EVENTS_URL} HTTP/1.1\r\nHost: localhost:{port}\r\n".encode()
        request += forged + b"Content-Length: 2\r\n\r\n{}"
        status, _, seen = exchange(port, request)
    finally:
        upstream.shutdown()
        upstream.server_close()

    assert status == 200, seen
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["host"] == ["localhost"]
    for header in ("forwarded", "x-forwarded-host", "x-real-ip", "x_forwarded_for", "connection"):
        assert header not in seen, seen
