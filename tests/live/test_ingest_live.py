"""The ingest path through a real gunicorn (gthread), on the suite's database."""

import http.client
import json

import pytest

from auditlog.http import errors
from auditlog.models import ActionLog
from tests.conftest import EVENTS_URL, make_event, without_request_id
from tests.live.conftest import free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def auth(writer_key):
    return {"Authorization": f"Bearer {writer_key[1]}"}


def test_event_posted_to_gunicorn_is_stored(gunicorn, auth):
    status, _, body = gunicorn.request("POST", EVENTS_URL, make_event(idempotency_key="live-1"), auth)
    replay_status, _, replay = gunicorn.request(
        "POST", EVENTS_URL, make_event(idempotency_key="live-1"), auth
    )

    assert (status, replay_status) == (201, 200)
    assert replay == body
    assert str(ActionLog.objects.get().uuid) == body["id"]


def post_chunked(server, chunks, headers):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        all_headers = {"Content-Type": "application/json", **headers}
        conn.request("POST", EVENTS_URL, body=iter(chunks), headers=all_headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_chunked_event_is_stored(gunicorn, auth):
    body = json.dumps(make_event()).encode()

    status, reply = post_chunked(gunicorn, (body[:10], body[10:]), auth)

    assert status == 201
    assert str(ActionLog.objects.get().uuid) == reply["id"]


def test_oversized_chunked_body_is_payload_too_large(gunicorn, auth):
    """No Content-Length to check up front: the read limit has to stop it."""
    chunks = (b'{"metadata": {"blob": "' + b"x" * 65536, b"x" * 65536, b'"}}')

    status, reply = post_chunked(gunicorn, chunks, auth)

    assert status == 413
    assert reply["error"]["code"] == errors.PAYLOAD_TOO_LARGE
    assert not ActionLog.objects.exists()


@pytest.mark.parametrize(
    "url",
    [f"postgres://postgres@127.0.0.1:{free_port()}/auditlog", "sqlite:////nonexistent-dir/audit.sqlite3"],
    ids=["postgres-down", "sqlite-unopenable"],
)
def test_unreachable_database_answers_json_503(gunicorn_factory, url, auth):
    server = gunicorn_factory(DATABASE_URL=url)

    status, headers, body = server.request("POST", EVENTS_URL, make_event(), auth)
    ready_status, ready_headers, ready_body = server.request("GET", "/readyz")

    assert status == 503
    assert without_request_id(body) == {
        "error": {"code": errors.SERVICE_UNAVAILABLE, "message": errors.MSG_UNAVAILABLE}
    }
    assert headers["Retry-After"] == "1"
    assert (ready_status, ready_headers["Retry-After"]) == (503, "1")
    assert ready_body["error"]["code"] == errors.SERVICE_UNAVAILABLE
    assert server.request("GET", "/healthz")[0] == 200
    assert "Traceback" not in server.log()


def test_a_request_line_up_to_8190_bytes_reaches_the_app_and_gets_json(gunicorn):
    # gunicorn's default limit is 4094; above 8190 its own HTML 414 answers (docs/api.md).
    status, headers, body = gunicorn.request("GET", "/api/v1/events?actor_id=" + "a" * 8100)

    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == errors.UNAUTHORIZED
