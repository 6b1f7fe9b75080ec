"""Reads of API keys: the bearer token's key, cached per process."""

import threading
import time

from django.conf import settings

from auditlog.keys.tokens import token_hash
from auditlog.models import ApiKey

# token hash -> (monotonic expiry, ApiKey). Only valid keys are cached, so unknown tokens cannot
# grow it; a process-local dict, read atomically under the GIL.
_api_keys: dict[str, tuple[float, ApiKey]] = {}
# Counts api_key_cache_forget calls: a key read before one of them (perhaps before the revocation
# committed) is not cached after it. The lock pairs the count with the dict; hits do not take it.
_forgotten = 0
_api_keys_lock = threading.Lock()


def api_key_get_by_token(token: str) -> ApiKey | None:
    """Return the active key for a bearer token, or None.

    Cached per process for AUDITLOG_API_KEY_CACHE_SECONDS: a query per request was a third of
    an ingest request's cost. A revoked key is refused at once by the process that revoked it
    (api_key_cache_forget) and within that time by every other process.
    """
    digest = token_hash(token)
    now = time.monotonic()
    cached = _api_keys.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    forgotten = _forgotten
    key = ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).order_by().first()
    with _api_keys_lock:
        if key is None:
            _api_keys.pop(digest, None)
        elif forgotten == _forgotten:
            _api_keys[digest] = (now + settings.AUDITLOG_API_KEY_CACHE_SECONDS, key)
    return key


def api_key_cache_forget(key: ApiKey) -> None:
    global _forgotten
    with _api_keys_lock:
        _forgotten += 1
        _api_keys.pop(key.key_hash, None)
