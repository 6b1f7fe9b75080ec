"""Writes to API keys: create, revoke, and record a key's last use."""

import logging
from datetime import timedelta

from django.db import OperationalError, connection
from django.db.models import Q
from django.utils import timezone

from auditlog.db.writer_queue import lock_wait_at_most
from auditlog.keys.selectors import api_key_cache_forget
from auditlog.keys.tokens import token_generate, token_hash
from auditlog.models import RESERVED_SOURCE_PREFIX, ApiKey, Scope

logger = logging.getLogger(__name__)
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A key's last use is bookkeeping: a request never waits long for a lock to record it.
TOUCH_LOCK_WAIT_SECONDS = 0.05


MSG_RESERVED_NAME = (
    f"Names starting with {RESERVED_SOURCE_PREFIX!r} are reserved for this service's own events; "
    "choose another."
)


def api_key_create(
    *, name: str, scopes: set[str], expected_interval_seconds: int | None = None
) -> tuple[ApiKey, str]:
    """Create a key; return it and its token, which exists only in this return value."""
    unknown = set(scopes) - set(Scope.values)
    if not scopes or unknown:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(Scope.values)}")
    if name.strip().lower().startswith(RESERVED_SOURCE_PREFIX):
        raise ValueError(MSG_RESERVED_NAME)
    prefix, token = token_generate()
    key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        key_hash=token_hash(token),
        scopes=",".join(sorted(scopes)),
        expected_interval_seconds=expected_interval_seconds,
    )
    return key, token


# What revoking means for requests: each server process caches a valid key (selectors).
MSG_REVOKED_FROM_ANOTHER_PROCESS = (
    "Requests with it get 401 within {seconds:g} s: each server process (gunicorn worker) "
    "caches a valid key for AUDITLOG_API_KEY_CACHE_SECONDS ({seconds:g} s)."
)
MSG_REVOKED_FROM_A_SERVER_PROCESS = (
    "Requests with them get 401 at once from this server process, and within {seconds:g} s from "
    "the others (gunicorn workers): each caches a valid key for AUDITLOG_API_KEY_CACHE_SECONDS "
    "({seconds:g} s)."
)


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    api_key_cache_forget(key)  # at once here; other processes within AUDITLOG_API_KEY_CACHE_SECONDS
    return key


def api_key_touch(*, key: ApiKey) -> None:
    """Record use, at most once per LAST_USED_RESOLUTION, so reads do not turn into writes."""
    now = timezone.now()
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    key.last_used_at = now  # one attempt a minute, whatever happens to it
    try:
        with lock_wait_at_most(TOUCH_LOCK_WAIT_SECONDS):
            ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)  # one writer a minute wins
    except OperationalError as exc:
        if not connection.is_usable():  # the database itself is gone: the request cannot go on
            raise
        logger.info("last use of key %s not recorded (a lock is held): %s", key.prefix, exc)
