import logging

import pytest
from django.test import RequestFactory

from auditlog.http import client_ip as client_ip_module
from auditlog.http.client_ip import client_ip

PROXY = "10.0.0.5"


def request(forwarded_for=None, remote=PROXY):
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return RequestFactory().get("/admin/login/", REMOTE_ADDR=remote, headers=headers)


@pytest.fixture
def proxies(settings):
    def set_to(count):
        settings.AUDITLOG_TRUSTED_PROXIES = count

    return set_to


@pytest.fixture(autouse=True)
def warn_again(monkeypatch):
    monkeypatch.setattr(client_ip_module, "_warned", False)


def test_no_trusted_proxy_uses_remote_addr_even_with_x_forwarded_for(proxies):
    proxies(0)

    assert client_ip(request("203.0.113.9", remote="198.51.100.7")) == "198.51.100.7"


def test_one_proxy_takes_the_last_entry_and_ignores_forged_ones_left_of_it(proxies):
    proxies(1)

    assert client_ip(request("1.1.1.1, 2.2.2.2, 203.0.113.9")) == "203.0.113.9"


def test_two_proxies_take_the_second_entry_from_the_right(proxies):
    proxies(2)

    assert client_ip(request("1.1.1.1, 203.0.113.9, 10.0.0.4")) == "203.0.113.9"


def test_too_few_entries_fall_back_to_remote_addr(proxies):
    proxies(2)

    assert client_ip(request("203.0.113.9")) == PROXY


def test_no_header_behind_a_proxy_falls_back_to_remote_addr(proxies):
    proxies(1)

    assert client_ip(request()) == PROXY


@pytest.mark.parametrize("junk", ["unknown", "", "   ", "999.1.1.1", "203.0.113.9; drop", "_hidden"])
def test_a_junk_entry_falls_back_to_remote_addr(proxies, junk):
    proxies(1)

    assert client_ip(request(f"1.1.1.1, {junk}")) == PROXY


def test_the_fallback_warns_once_per_process(proxies, caplog):
    proxies(1)

    with caplog.at_level(logging.WARNING, logger="auditlog.http.client_ip"):
        client_ip(request("unknown"))
        client_ip(request("unknown"))

    assert len(caplog.records) == 1
    assert "AUDITLOG_TRUSTED_PROXIES=1" in caplog.records[0].getMessage()


def test_a_valid_entry_does_not_warn(proxies, caplog):
    proxies(1)

    with caplog.at_level(logging.WARNING, logger="auditlog.http.client_ip"):
        client_ip(request("203.0.113.9"))

    assert caplog.records == []


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (" 203.0.113.9 ", "203.0.113.9"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:5678", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[::1]", "::1"),
    ],
)
def test_entries_are_normalised(proxies, entry, expected):
    proxies(1)

    assert client_ip(request(f"10.9.9.9,{entry}")) == expected


def test_remote_addr_is_normalised_too(proxies):
    proxies(0)

    assert client_ip(request(remote="2001:DB8::0:1")) == "2001:db8::1"


def test_a_missing_remote_addr_is_none(proxies):
    proxies(0)

    assert client_ip(request(remote="")) is None
