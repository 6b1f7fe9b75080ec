import json

import pytest
from django.db import connection

from auditlog.keys.services import api_key_create
from auditlog.models import Scope

EVENTS_URL = "/api/v1/events"
BATCH_URL = "/api/v1/events/batch"


def make_event(**overrides) -> dict:
    event = {
        "action": "invoice.delete",
        "actor": {"id": "42", "type": "user", "name": "Ada"},
        "target": {"type": "invoice", "id": "7", "name": "INV-7"},
        "occurred_at": "2026-01-31T12:00:00Z",
        "outcome": "success",
        "context": {"ip": "203.0.113.9", "user_agent": "billing/1.0"},
        "metadata": {"reason": "duplicate"},
    }
    event.update(overrides)
    return event


class ApiClient:
    """The Django test client with a bearer token and JSON bodies."""

    def __init__(self, client, token):
        self.client = client
        self.token = token

    def headers(self, extra=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return headers | (extra or {})

    def post(self, url, body, *, headers=None, content_type="application/json"):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.client.post(url, data=data, content_type=content_type, headers=self.headers(headers))

    def get(self, url, **params):
        return self.client.get(url, params, headers=self.headers())


@pytest.fixture
def writer_key(db):
    return api_key_create(name="producer", scopes={Scope.WRITE, Scope.READ})


@pytest.fixture
def api(client, writer_key):
    return ApiClient(client, writer_key[1])


@pytest.fixture
def reader_api(client, db):
    return ApiClient(client, api_key_create(name="reader", scopes={Scope.READ})[1])


@pytest.fixture
def anonymous_api(client, db):
    return ApiClient(client, None)


requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (run with DATABASE_URL=postgres://...)"
)
requires_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite-specific behaviour")
