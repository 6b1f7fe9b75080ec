import time

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from auditlog.keys.selectors import api_key_get_by_token
from auditlog.keys.services import api_key_revoke
from auditlog.models import ApiKey
from tests.conftest import EVENTS_URL

pytestmark = pytest.mark.django_db

CACHE_SECONDS = 0.3


@override_settings(AUDITLOG_API_KEY_CACHE_SECONDS=CACHE_SECONDS)
def test_a_key_revoked_by_another_process_is_refused_once_the_cache_time_has_passed(api, writer_key):
    key, _ = writer_key
    assert api.get(EVENTS_URL).status_code == 200  # this process now caches the key
    started = time.monotonic()

    # What `manage.py auditlog_revoke_key` or another worker's admin does: only the row changes here.
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    still_cached = api.get(EVENTS_URL).status_code
    assert time.monotonic() - started < CACHE_SECONDS, "too slow to see the cached answer"
    time.sleep(CACHE_SECONDS)

    assert (still_cached, api.get(EVENTS_URL).status_code) == (200, 401)


def test_a_key_revoked_in_this_process_is_refused_at_once(api, writer_key):
    key, _ = writer_key
    assert api.get(EVENTS_URL).status_code == 200

    api_key_revoke(key=key)

    assert api.get(EVENTS_URL).status_code == 401


def test_a_key_read_as_this_process_revokes_it_is_not_cached(writer_key):
    """The lookup read the key as valid, and the revocation committed and cleared the cache
    before the lookup stored it: it must not be stored then."""
    key, token = writer_key
    revoked = []

    def revoke_after_the_lookup(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not revoked and sql.lstrip().upper().startswith("SELECT") and "auditlog_apikey" in sql:
            revoked.append(key)
            api_key_revoke(key=key)
        return result

    with connection.execute_wrapper(revoke_after_the_lookup):
        assert api_key_get_by_token(token) == key  # read just before the revocation

    assert revoked == [key]
    assert api_key_get_by_token(token) is None
