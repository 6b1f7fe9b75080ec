from datetime import timedelta

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


# --- Behind a reverse proxy: every request comes from its address; the client is in X-Forwarded-For.

PROXY = "10.0.0.5"


@pytest.fixture
def behind_one_proxy(settings):
    settings.AUDITLOG_TRUSTED_PROXIES = 1


def login_via_proxy(client, password, forwarded_for, username="auditor"):
    return client.post(
        LOGIN_URL,
        {"username": username, "password": password},
        REMOTE_ADDR=PROXY,
        headers={"X-Forwarded-For": forwarded_for},
    )


def test_behind_a_proxy_one_clients_failures_do_not_lock_out_another(behind_one_proxy, client, auditor):
    get_user_model().objects.create_superuser("other", "o@example.com", "other pass")
    for n in range(5):
        login_via_proxy(client, "wrong", "203.0.113.10", username=f"guess{n}")

    assert login_via_proxy(client, "other pass", "203.0.113.10", username="other").status_code == 429
    assert login_via_proxy(client, "other pass", "203.0.113.20", username="other").status_code == 302


def test_behind_a_proxy_a_forged_x_forwarded_for_does_not_escape_a_lockout(behind_one_proxy, client, auditor):
    for n in range(5):
        login_via_proxy(client, "wrong", "203.0.113.10", username=f"guess{n}")

    response = login_via_proxy(client, "correct horse", "198.51.100.99, 203.0.113.10")

    assert response.status_code == 429
    assert AccessAttempt.objects.filter(ip_address=PROXY).count() == 0


def test_the_lockout_answer_is_429_with_retry_after_and_says_for_how_long(client, auditor, settings):
    for _ in range(5):
        login(client, "wrong")

    response = login(client, "correct horse")

    assert response.status_code == 429
    assert response["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds())) == "900"
    assert "Try again in 15 minutes." in response.content.decode()


def test_the_lockout_answer_follows_the_configured_cool_off(client, auditor, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    for _ in range(5):
        login(client, "wrong")

    response = login(client, "correct horse")

    assert (response.status_code, response["Retry-After"]) == (429, "60")
    assert "Try again in 1 minute." in response.content.decode()


def test_behind_a_proxy_a_failed_login_records_the_clients_address(behind_one_proxy, client, auditor):
    assert login_via_proxy(client, "wrong", "198.51.100.99, 203.0.113.10").status_code == 200

    event = ActionLog.objects.get(action="auditlog.admin.login_failed")
    assert event.ip_address == "203.0.113.10"
