"""API requests skip the middleware only the admin needs (auditlog.http.site_middleware); the admin
keeps Django's whole stack."""

import pytest

from tests.conftest import EVENTS_URL, make_event

pytestmark = pytest.mark.django_db

SITE_ONLY_ATTRIBUTES = ("session", "user", "_messages")


def test_an_api_request_runs_no_session_user_or_message_middleware(api):
    response = api.post(EVENTS_URL, make_event())

    assert response.status_code == 201
    request = response.wsgi_request
    assert [name for name in SITE_ONLY_ATTRIBUTES if hasattr(request, name)] == []
    assert "Cookie" not in response.get("Vary", "")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_skip_them_too(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert [name for name in SITE_ONLY_ATTRIBUTES if hasattr(response.wsgi_request, name)] == []


def test_the_admin_keeps_the_whole_stack(admin_client):
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    assert all(hasattr(response.wsgi_request, name) for name in SITE_ONLY_ATTRIBUTES)
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", [EVENTS_URL, "/api/v1/nope", "/healthz"])
def test_api_answers_still_declare_their_length(api, path):
    response = api.client.get(path, headers=api.headers())

    assert int(response["Content-Length"]) == len(response.content)
