"""The integration's settings: AUDITLOG_CLIENT in the producer's settings.

AUDITLOG_CLIENT = {
    "URL": "https://audit.example.com",   # the service
    "TOKEN": "...",                        # a key with the write scope
    "DATABASE": "default",                 # where the outbox table lives (the business data's)
    "TRUSTED_PROXIES": 0,                  # reverse proxies in front of this app (X-Forwarded-For)
    "SECRET_FIELDS": (),                   # extra field names never sent (see register())
}
"""

from django.conf import settings

DEFAULTS = {
    "URL": None,
    "TOKEN": None,
    "DATABASE": "default",
    "TRUSTED_PROXIES": 0,
    "SECRET_FIELDS": (),
    "DEFAULT_ACTOR": {"id": "system", "type": "system"},
}


def setting(name: str):
    return {**DEFAULTS, **getattr(settings, "AUDITLOG_CLIENT", {})}[name]
