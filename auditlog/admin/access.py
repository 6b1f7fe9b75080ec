"""Every change of access is an audit event of the internal source: API keys created and revoked;
users and groups created, changed and deleted, and their groups and permissions; lockouts lifted.
Each names who: the admin user whose request made the change (ActingRequestMiddleware), or
"command line" with the operating system's user for manage.py and anything else outside a
request.

The event is recorded once the change commits (transaction.on_commit): a change rolled back
records nothing, and the event's own insert never runs inside another table's transaction (on
SQLite it takes the writer queue). A process that dies between the commit and that insert
loses the event; the change itself is in Django's tables.
"""

import contextvars
import getpass
import os

from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from auditlog.http.site_middleware import site_only
from auditlog.ingest.services import event_record_internal
from auditlog.models import ApiKey

_request = contextvars.ContextVar("auditlog_acting_request", default=None)


class _ActingRequest:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


# The admin's requests only: the API changes no access.
ActingRequestMiddleware = site_only(_ActingRequest)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def access_event(action: str, *, target_type: str, target_id: str, metadata: dict | None = None) -> None:
    """Record `action` on the target once the current transaction commits, by whoever acts."""
    request = _request.get()
    user = getattr(request, "user", None)
    if request is not None and user is not None and user.is_authenticated:
        actor_id, actor_type = user.get_username(), "staff"
    elif request is not None:
        actor_id, actor_type = "anonymous", "staff"
    else:
        actor_id, actor_type = f"command line ({_os_user()})", "command line"

    def record():
        event_record_internal(
            action=action,
            actor_id=actor_id,
            actor_type=actor_type,
            request=request,
            target_type=target_type,
            target_id=target_id,
            metadata=metadata or {},
        )

    transaction.on_commit(record)


def api_key_created(key: ApiKey) -> None:
    """Where a person creates a key (the admin, auditlog_create_key); not every ApiKey row."""
    access_event(
        "auditlog.apikey.create",
        target_type="apikey",
        target_id=key.prefix,
        metadata={"name": key.name, "scopes": key.scopes},
    )


def api_key_revoked(key: ApiKey) -> None:
    access_event(
        "auditlog.apikey.revoke", target_type="apikey", target_id=key.prefix, metadata={"name": key.name}
    )


def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    if update_fields and set(update_fields) <= {"last_login"}:
        return  # a login, recorded as auditlog.admin.login
    fields = sorted(update_fields) if update_fields else None
    access_event(
        "auditlog.user.create" if created else "auditlog.user.change",
        target_type="user",
        target_id=instance.get_username(),
        metadata={
            "is_active": instance.is_active,
            "is_staff": instance.is_staff,
            "is_superuser": instance.is_superuser,
            **({"fields": fields} if fields else {}),
        },
    )


def _user_deleted(sender, instance, **kwargs):
    access_event("auditlog.user.delete", target_type="user", target_id=instance.get_username())


def _group_saved(sender, instance, created, **kwargs):
    access_event(
        "auditlog.group.create" if created else "auditlog.group.change",
        target_type="group",
        target_id=instance.name,
    )


def _group_deleted(sender, instance, **kwargs):
    access_event("auditlog.group.delete", target_type="group", target_id=instance.name)


def _members_changed(what: str):
    """m2m_changed of a user's groups or permissions, or a group's permissions."""

    def receiver(sender, instance, action, reverse, model, pk_set, **kwargs):
        if action not in ("post_add", "post_remove", "post_clear") or reverse:
            return
        names = sorted(str(item) for item in model.objects.filter(pk__in=pk_set or ()))
        change = {"post_add": "added", "post_remove": "removed", "post_clear": "cleared"}[action]
        owner = "user" if isinstance(instance, get_user_model()) else "group"
        target = instance.get_username() if owner == "user" else instance.name
        access_event(
            f"auditlog.{owner}.{what}.change",
            target_type=owner,
            target_id=target,
            metadata={change: names} if action != "post_clear" else {"cleared": True},
        )

    return receiver


def _attempt_deleted(sender, instance, **kwargs):
    access_event(
        "auditlog.lockout.lift",
        target_type="login",
        target_id=instance.username or "",
        metadata={"ip_address": instance.ip_address, "failures": instance.failures_since_start},
    )


def connect() -> None:
    user = get_user_model()
    post_save.connect(_user_saved, sender=user, dispatch_uid="auditlog.access.user_saved")
    post_delete.connect(_user_deleted, sender=user, dispatch_uid="auditlog.access.user_deleted")
    post_save.connect(_group_saved, sender=Group, dispatch_uid="auditlog.access.group_saved")
    post_delete.connect(_group_deleted, sender=Group, dispatch_uid="auditlog.access.group_deleted")
    post_delete.connect(_attempt_deleted, sender=AccessAttempt, dispatch_uid="auditlog.access.lockout")
    for through, what, uid in (
        (user.groups.through, "groups", "user_groups"),
        (user.user_permissions.through, "permissions", "user_permissions"),
        (Group.permissions.through, "permissions", "group_permissions"),
    ):
        m2m_changed.connect(
            _members_changed(what), sender=through, dispatch_uid=f"auditlog.access.{uid}", weak=False
        )
