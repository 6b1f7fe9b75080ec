import pytest
from django.test import override_settings

from auditlog.keys.selectors import api_key_get_by_token
from auditlog.keys.services import api_key_create
from auditlog.models import ApiKey

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/auditlog/apikey/add/"
LIST_URL = "/admin/auditlog/apikey/"


def test_add_shows_the_token_once_and_stores_only_its_hash(admin_client):
    response = admin_client.post(ADD_URL, {"name": "billing", "scopes": ["write", "read"]})

    assert response.status_code == 200
    key = ApiKey.objects.get(name="billing")
    token = response.context["token"]
    assert token.startswith(f"al_{key.prefix}_")
    assert token in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert api_key_get_by_token(token) == key
    assert token not in admin_client.get(f"{LIST_URL}{key.pk}/change/").content.decode()


def test_add_requires_a_scope(admin_client):
    response = admin_client.post(ADD_URL, {"name": "billing"})

    assert response.status_code == 200
    assert response.context["form"].errors == {"scopes": ["This field is required."]}
    assert not ApiKey.objects.filter(name="billing").exists()


def test_revoke_action(admin_client):
    key, token = api_key_create(name="billing", scopes={"write"})

    response = admin_client.post(LIST_URL, {"action": "revoke", "_selected_action": [key.pk]}, follow=True)

    assert response.status_code == 200
    assert api_key_get_by_token(token) is None
    key.refresh_from_db()
    assert key.revoked_at is not None


@override_settings(AUDITLOG_API_KEY_CACHE_SECONDS=7.5)
def test_revoke_action_says_when_every_server_process_refuses_the_keys(admin_client):
    keys = [api_key_create(name=name, scopes={"write"})[0] for name in ("billing", "crm")]

    response = admin_client.post(
        LIST_URL, {"action": "revoke", "_selected_action": [key.pk for key in keys]}, follow=True
    )

    assert [str(message) for message in response.context["messages"]] == [
        "Revoked 2 API keys. Requests with them get 401 at once from this server process, and "
        "within 7.5 s from the others (gunicorn workers): each caches a valid key for "
        "AUDITLOG_API_KEY_CACHE_SECONDS (7.5 s)."
    ]


def test_keys_cannot_be_deleted(admin_client):
    key, _ = api_key_create(name="billing", scopes={"write"})

    assert admin_client.get(f"{LIST_URL}{key.pk}/delete/").status_code == 403
    actions = [name for name, _ in admin_client.get(LIST_URL).context["action_form"].fields["action"].choices]
    assert "revoke" in actions
    assert "delete_selected" not in actions
