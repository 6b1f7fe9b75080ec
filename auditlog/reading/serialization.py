"""The public JSON form of an event: the API's responses and the exports use it."""

from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder

from auditlog.models import ActionLog

_ENCODER = DjangoJSONEncoder()


def json_timestamp(value: datetime) -> str:
    """A datetime as the API writes it everywhere (DjangoJSONEncoder: milliseconds, `Z`)."""
    return _ENCODER.default(value)


def event_as_dict(event: ActionLog) -> dict:
    return {
        "id": str(event.uuid),
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "action": event.action,
        "actor": {"id": event.actor_id, "type": event.actor_type, "name": event.actor_name},
        "target": {"id": event.target_id, "type": event.target_type, "name": event.target_name},
        "outcome": event.outcome,
        "context": {"ip": event.ip_address, "user_agent": event.user_agent},
        "metadata": event.metadata,
        "idempotency_key": event.idempotency_key,
        "source": {"name": event.source.name, "prefix": event.source.prefix},
    }
