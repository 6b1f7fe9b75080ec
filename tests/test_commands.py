from io import StringIO

import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.test import override_settings

from auditlog.keys.selectors import api_key_get_by_token
from auditlog.models import ApiKey

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def test_create_key_prints_the_token_on_the_last_line():
    lines = run("auditlog_create_key", "--name", "billing", "--scopes", "write,read")

    key = ApiKey.objects.get()
    assert lines[-1].startswith(f"al_{key.prefix}_")
    assert api_key_get_by_token(lines[-1]) == key
    assert (key.name, key.scope_set) == ("billing", {"read", "write"})
    assert lines[-1] not in key.key_hash


def test_create_key_defaults_to_write_only():
    run("auditlog_create_key", "--name", "producer")

    assert ApiKey.objects.get().scope_set == {"write"}


@pytest.mark.parametrize("scopes", ["admin", "", "write,delete"])
def test_create_key_refuses_unknown_scopes(scopes):
    with pytest.raises(CommandError, match="--scopes"):
        run("auditlog_create_key", "--name", "x", "--scopes", scopes)

    assert not ApiKey.objects.exists()


def test_revoke_key_by_prefix():
    token = run("auditlog_create_key", "--name", "billing")[-1]
    key = ApiKey.objects.get()

    lines = run("auditlog_revoke_key", key.prefix)

    assert lines[0].startswith(f"Revoked API key {key}. ")
    assert api_key_get_by_token(token) is None


@override_settings(AUDITLOG_API_KEY_CACHE_SECONDS=7.5)
def test_revoke_key_says_when_the_servers_refuse_it():
    run("auditlog_create_key", "--name", "billing")
    key = ApiKey.objects.get()

    lines = run("auditlog_revoke_key", key.prefix)

    assert lines == [
        f"Revoked API key {key}. Requests with it get 401 within 7.5 s: each server process "
        "(gunicorn worker) caches a valid key for AUDITLOG_API_KEY_CACHE_SECONDS (7.5 s)."
    ]


@override_settings(AUDITLOG_API_KEY_CACHE_SECONDS=12)
def test_revoke_key_help_says_when_the_servers_refuse_it():
    parser = load_command_class("auditlog", "auditlog_revoke_key").create_parser(
        "manage.py", "auditlog_revoke_key"
    )

    assert "Requests with it get 401 within 12 s" in " ".join(parser.format_help().split())


def test_revoke_unknown_prefix_fails():
    with pytest.raises(CommandError, match="No API key with prefix 'nope'"):
        run("auditlog_revoke_key", "nope")


def test_revoke_twice_fails():
    run("auditlog_create_key", "--name", "billing")
    prefix = ApiKey.objects.get().prefix
    run("auditlog_revoke_key", prefix)

    with pytest.raises(CommandError, match="already revoked"):
        run("auditlog_revoke_key", prefix)
