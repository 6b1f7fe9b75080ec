"""auditlog's producer client: record() persists first, a sender delivers later, exactly once."""

from auditlog_client.client import Client
from auditlog_client.outbox import OutboxFull, Stats
from auditlog_client.validation import EventInvalid

__all__ = ["Client", "EventInvalid", "OutboxFull", "Stats"]
