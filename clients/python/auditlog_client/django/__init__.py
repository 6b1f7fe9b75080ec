"""auditlog's Django integration for producer apps: record() writes the event to an outbox
table in the producer's own database, in the caller's transaction: rolled back, there is no
event; committed, a sender delivers it, even if the process dies right after the commit.

    INSTALLED_APPS += ["auditlog_client.django"]
    MIDDLEWARE += ["auditlog_client.django.middleware.AuditContextMiddleware"]
    AUDITLOG_CLIENT = {"URL": "...", "TOKEN": "..."}

    from auditlog_client.django import record
    with transaction.atomic():
        invoice.delete()
        record(action="invoice.delete", target={"type": "invoice", "id": invoice.pk})

Deliver with `manage.py auditlog_client_send --follow` (or start_sender() in a process).
"""

from datetime import datetime

from auditlog_client.client import event_build


def record(
    *,
    action: str,
    actor: dict | str | int | None = None,
    target: dict | None = None,
    outcome: str = "success",
    metadata: dict | None = None,
    occurred_at: datetime | str | None = None,
    context: dict | None = None,
    idempotency_key: str | None = None,
    using: str | None = None,
) -> str:
    """Write the event to the outbox in the current transaction; return its idempotency key.

    Inside a request (AuditContextMiddleware), the actor defaults to request.user, the context
    to the client's address and user agent, and metadata gains the request id; what the call
    gives wins. Raises EventInvalid when the service would refuse the event (nothing written).
    """
    from auditlog_client.django.conf import setting
    from auditlog_client.django.middleware import client_ip, current_request
    from auditlog_client.django.models import OutboxEvent

    request = current_request()
    if actor is None:
        actor = _actor(request)
    if request is not None:
        context = {
            **{"ip": client_ip(request), "user_agent": request.META.get("HTTP_USER_AGENT", "")[:512] or None},
            **(context or {}),
        }
        context = {name: value for name, value in context.items() if value is not None} or None
        metadata = {"request_id": request.audit_request_id, **(metadata or {})}
    key, body = event_build(
        action=action,
        actor=actor,
        target=target,
        outcome=outcome,
        metadata=metadata,
        occurred_at=occurred_at,
        context=context,
        idempotency_key=idempotency_key,
    )
    OutboxEvent.objects.using(using or setting("DATABASE")).create(key=key, body=body)
    return key


def _actor(request) -> dict:
    user = getattr(request, "user", None)
    if user is None:
        raise ValueError(
            "record() needs an actor outside a request (AuditContextMiddleware gives request.user)"
        )
    if not user.is_authenticated:
        return {"id": "anonymous", "type": "anonymous"}
    return {"id": str(user.pk), "type": "user", "name": user.get_username()}


def register(model, *, include=None, exclude=(), secrets=()):
    """Record create, update and delete of `model` (and changes of its many-to-many fields)."""
    from auditlog_client.django.registration import register as _register

    return _register(model, include=include, exclude=exclude, secrets=secrets)


def start_sender(using: str | None = None):
    """A daemon thread delivering the outbox from this process; returns (thread, stop event)."""
    from auditlog_client.django.sender import start_sender as _start

    return _start(using)


__all__ = ["record", "register", "start_sender"]
