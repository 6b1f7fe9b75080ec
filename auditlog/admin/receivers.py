"""Record who looks at the trail: admin logins, failed logins and lockouts become events."""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from auditlog.ingest.services import event_record_internal


@receiver(user_logged_in)
def record_login(sender, request, user, **kwargs):
    if request is not None:
        event_record_internal(action="auditlog.admin.login", request=request, actor_id=user.get_username())


@receiver(user_login_failed)
def record_login_failure(sender, credentials, request=None, **kwargs):
    if request is not None:
        event_record_internal(
            action="auditlog.admin.login_failed",
            request=request,
            actor_id=str(credentials.get("username", "")),
            outcome="failure",
        )


@receiver(user_locked_out)
def record_lockout(sender, request, username=None, ip_address=None, **kwargs):
    if request is not None:
        event_record_internal(
            action="auditlog.admin.lockout",
            request=request,
            actor_id=str(username or ""),
            outcome="failure",
            metadata={"ip_address": ip_address},
        )
