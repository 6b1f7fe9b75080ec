"""gunicorn alone (no proxy in front) against slow clients: no body is read without a deadline,
and a request without a valid key is answered before its upload."""

import json
import socket
import time

import pytest

from tests.conftest import EVENTS_URL, make_event, without_request_id

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BODY_TIMEOUT = 1.5


def open_upload(port: int, token: str, length: int) -> socket.socket:
    """Send a POST's headers and nothing of its body yet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST {EVENTS_URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict]:
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            None,
        )
        if length is not None and len(body) >= length:
            break
    status = int(raw.split(b" ", 2)[1])
    return status, json.loads(raw.partition(b"\r\n\r\n")[2])


def test_a_body_that_trickles_in_gets_408_at_the_deadline(gunicorn_factory, writer_key):
    server = gunicorn_factory(AUDITLOG_BODY_TIMEOUT=str(BODY_TIMEOUT))
    body = json.dumps(make_event(idempotency_key="slow")).encode()
    sock = open_upload(server.port, writer_key[1], len(body))
    started = time.monotonic()
    try:
        for byte in body:  # a byte every 0.2 s: each recv succeeds, the whole would take minutes
            if time.monotonic() - started > BODY_TIMEOUT - 0.3:
                break  # then it stalls, so the answer is not lost to a reset from bytes unread
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
        status, answer = read_answer(sock)
        elapsed = time.monotonic() - started
        assert sock.recv(1) == b""  # and the connection is closed
    finally:
        sock.close()

    assert status == 408
    assert without_request_id(answer) == {
        "error": {"code": "request_timeout", "message": f"The body did not arrive within {BODY_TIMEOUT:g} s."}
    }
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 1.0
    assert server.request("GET", "/healthz")[0] == 200


def test_an_upload_with_a_bad_key_is_refused_before_its_body_arrives(gunicorn):
    sock = open_upload(gunicorn.port, "not-a-key", 50_000)
    started = time.monotonic()
    try:
        status, answer = read_answer(sock)
    finally:
        sock.close()

    assert time.monotonic() - started < 2.0  # no byte of the body was ever sent
    assert status == 401
    assert answer["error"]["code"] == "unauthorized"


def test_every_thread_held_by_a_slow_upload_is_freed_at_the_deadline(gunicorn_factory, writer_key):
    """2 workers x 4 threads, 8 valid-key uploads that never finish: a normal POST still gets in."""
    server = gunicorn_factory(AUDITLOG_BODY_TIMEOUT=str(BODY_TIMEOUT))
    uploads = [open_upload(server.port, writer_key[1], 1000) for _ in range(8)]
    try:
        for sock in uploads:
            sock.sendall(b"{")
        started = time.monotonic()
        status, _, answer = server.request(
            "POST",
            EVENTS_URL,
            make_event(idempotency_key="normal"),
            {"Authorization": f"Bearer {writer_key[1]}"},
        )
        elapsed = time.monotonic() - started
        statuses = [read_answer(sock)[0] for sock in uploads]
    finally:
        for sock in uploads:
            sock.close()

    assert status == 201, answer
    # The kernel spreads the 9 connections over the 2 workers unevenly: a worker that got 5
    # uploads frees a thread for the POST after two deadlines (without them, never).
    assert elapsed < 2 * BODY_TIMEOUT + 1.0
    assert statuses == [408] * 8


def test_an_admin_form_body_that_trickles_in_gets_408_at_the_deadline(gunicorn_factory):
    """No key needed to post the admin's login form, and Django reads it from the CSRF check
    on: without the deadline, 40 such clients stopped the service."""
    server = gunicorn_factory(AUDITLOG_BODY_TIMEOUT=str(BODY_TIMEOUT))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    started = time.monotonic()
    try:
        sock.sendall(
            b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: csrftoken=" + b"a" * 32 + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nusername=a"
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
        elapsed = time.monotonic() - started
    finally:
        sock.close()

    assert raw.startswith(b"HTTP/1.1 408 ")
    assert f"The body did not arrive within {BODY_TIMEOUT:g} s.".encode() in raw
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 1.0
