"""Every change of access is an internal audit event naming who made it (auditlog.admin.access):
API keys created and revoked (admin, commands), users, groups and their permissions, lockouts
lifted."""

import getpass
import io

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from auditlog.ingest.services import INTERNAL_SOURCE_NAME
from auditlog.models import ActionLog, ApiKey
from auditlog.trail.note import Signer

pytestmark = pytest.mark.django_db


def recorded(action: str) -> list[ActionLog]:
    return list(ActionLog.objects.filter(source__name=INTERNAL_SOURCE_NAME, action=action).order_by("id"))


def test_a_key_made_and_revoked_in_the_admin_names_the_admin_user(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/auditlog/apikey/add/", {"name": "billing", "scopes": ["write"]})
    key = ApiKey.objects.get(name="billing")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/auditlog/apikey/", {"action": "revoke", "_selected_action": [key.pk]})

    [created], [revoked] = recorded("auditlog.apikey.create"), recorded("auditlog.apikey.revoke")
    for event in (created, revoked):
        assert (event.actor_id, event.actor_type) == (admin_user.username, "staff")
        assert (event.target_type, event.target_id) == ("apikey", key.prefix)
        assert event.ip_address == "127.0.0.1"
    assert created.metadata == {"name": "billing", "scopes": "write"}


def test_a_key_made_and_revoked_on_the_command_line_says_so(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("auditlog_create_key", "--name", "crm", "--scopes", "read", stdout=io.StringIO())
    key = ApiKey.objects.get(name="crm")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("auditlog_revoke_key", key.prefix, stdout=io.StringIO())

    for action in ("auditlog.apikey.create", "auditlog.apikey.revoke"):
        [event] = recorded(action)
        assert event.actor_type == "command line"
        assert event.actor_id.startswith("command line (") and event.target_id == key.prefix


def test_a_users_permissions_changed_in_the_admin_are_recorded(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    user = get_user_model().objects.create_user("ada", password="x" * 20)
    permission = Permission.objects.get(codename="view_actionlog")
    group = Group.objects.create(name="auditors")
    form = {
        "username": "ada",
        "is_active": "on",
        "is_staff": "on",
        "user_permissions": [permission.pk],
        "groups": [group.pk],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-12-01",
        "date_joined_1": "10:00:00",
        "initial-date_joined_0": "2026-12-01",
        "initial-date_joined_1": "10:00:00",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/auth/user/{user.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]

    [permissions] = recorded("auditlog.user.permissions.change")
    [groups] = recorded("auditlog.user.groups.change")
    assert (permissions.actor_id, permissions.target_type, permissions.target_id) == (
        admin_user.username,
        "user",
        "ada",
    )
    assert permissions.metadata == {"added": [str(permission)]}
    assert groups.metadata == {"added": ["auditors"]}
    [changed] = recorded("auditlog.user.change")
    assert changed.metadata["is_staff"] is True


def test_users_groups_and_lockouts_outside_the_admin_are_recorded_as_the_command_line(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        user = get_user_model().objects.create_user("grace", password="x" * 20)
        group = Group.objects.create(name="operators")
        group.permissions.add(Permission.objects.get(codename="view_apikey"))
        group.delete()
        AccessAttempt.objects.create(username="grace", ip_address="203.0.113.9", failures_since_start=5)
        AccessAttempt.objects.all().delete()  # what lifting a lockout does (admin or axes_reset)
        user.delete()

    actions = [
        event.action for event in ActionLog.objects.filter(source__name=INTERNAL_SOURCE_NAME).order_by("id")
    ]
    assert actions == [
        "auditlog.user.create",
        "auditlog.group.create",
        "auditlog.group.permissions.change",
        "auditlog.group.delete",
        "auditlog.lockout.lift",
        "auditlog.user.delete",
    ]
    [lift] = recorded("auditlog.lockout.lift")
    assert (lift.target_id, lift.metadata["ip_address"], lift.actor_type) == (
        "grace",
        "203.0.113.9",
        "command line",
    )


def test_a_login_is_not_a_change_of_access(client, admin_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.force_login(admin_user)
        admin_user.save(update_fields=["last_login"])

    assert recorded("auditlog.user.change") == []


def test_a_command_line_export_is_recorded(tmp_path, django_capture_on_commit_callbacks):
    out = tmp_path / "events.csv"
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "auditlog_export",
            "--action",
            "invoice.delete",
            "-o",
            str(out),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )

    [event] = recorded("auditlog.events.export")
    assert event.actor_type == "command line" and event.target_id == "csv"
    assert event.metadata == {"filters": {"action": "invoice.delete"}, "output": str(out)}


@pytest.mark.usefixtures("owner_connections")  # committed: each event recorded as it happens
def test_sealing_and_a_new_trail_key_are_recorded_with_the_os_user(settings):
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0
    settings.AUDITLOG_SEAL_INTERVAL_SECONDS = 0
    first, second = Signer.generate("audit.example.com/log"), Signer.generate("audit.example.com/log")
    settings.AUDITLOG_TRAIL_KEY = first.text()
    call_command("auditlog_seal", stdout=io.StringIO())
    call_command("auditlog_seal", stdout=io.StringIO())  # the same key: no rotation
    settings.AUDITLOG_TRAIL_KEY = second.text()
    call_command("auditlog_seal", "--follow", "--rounds", "2", stdout=io.StringIO())

    seals = recorded("auditlog.seal")
    assert [event.metadata["tree_size"] for event in seals] == [0, 2]  # the second sealed the first's
    [start], [stop] = recorded("auditlog.seal.start"), recorded("auditlog.seal.stop")
    assert stop.metadata == {"rounds": 2}
    first_key, rotation = recorded("auditlog.trail.key_rotate")
    assert (first_key.target_id, first_key.metadata["previous_key_id"]) == (first.key_id.hex(), None)
    assert (rotation.target_id, rotation.metadata["previous_key_id"]) == (
        second.key_id.hex(),
        first.key_id.hex(),
    )
    for event in (*seals, start, stop, first_key, rotation):
        assert event.actor_type == "command line" and event.actor_id == f"command line ({getpass.getuser()})"
        assert event.metadata.get("origin", "audit.example.com/log") == "audit.example.com/log"
    assert {event.target_id for event in (*seals, start, stop)} == {"audit.example.com/log"}
