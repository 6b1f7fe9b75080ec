import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model

from auditlog.models import ActionLog

pytestmark = pytest.mark.django_db

LOGIN_URL = "/admin/login/?next=/admin/"


@pytest.fixture
def auditor(db):
    return get_user_model().objects.create_superuser("auditor", "a@example.com", "correct horse")


def login(client, password, username="auditor", address="198.51.100.7"):
    return client.post(LOGIN_URL, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_login_is_recorded(client, auditor):
    assert login(client, "correct horse").status_code == 302

    event = ActionLog.objects.get(action="auditlog.admin.login")
    assert (event.actor_id, event.outcome, event.ip_address) == ("auditor", "success", "198.51.100.7")


def test_failed_login_is_recorded(client, auditor):
    assert login(client, "wrong").status_code == 200

    event = ActionLog.objects.get(action="auditlog.admin.login_failed")
    assert (event.actor_id, event.outcome, event.ip_address) == ("auditor", "failure", "198.51.100.7")
    assert "password" not in event.metadata


def test_five_failures_lock_the_user_out_even_with_the_right_password(client, auditor):
    for _ in range(5):
        login(client, "wrong", address=f"198.51.100.{_}")  # a different address each time

    response = login(client, "correct horse", address="203.0.113.50")

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert ActionLog.objects.filter(action="auditlog.admin.lockout", actor_id="auditor").exists()


def test_five_failures_from_one_address_lock_that_address_out(client, auditor):
    get_user_model().objects.create_superuser("other", "o@example.com", "other pass")
    for n in range(5):
        login(client, "wrong", username=f"guess{n}")  # a different username each time

    assert login(client, "other pass", username="other").status_code == 429
    assert login(client, "other pass", username="other", address="203.0.113.51").status_code == 302


def test_lockouts_are_visible_to_staff(admin_client, client, auditor):
    for _ in range(5):
        login(client, "wrong")

    response = admin_client.get("/admin/axes/accessattempt/")

    assert response.status_code == 200
    assert AccessAttempt.objects.filter(username="auditor").exists()
    assert "auditor" in response.content.decode()
