"""The client's address behind AUDITLOG_TRUSTED_PROXIES reverse proxies (admin lockouts, admin events).

Each trusted proxy appends the address that connected to it to X-Forwarded-For, so the entry the
outermost one added, N from the right, is the client; entries left of it are whatever the client
sent and are ignored. With 0 trusted proxies the header is never read.
"""

import ipaddress
import logging

from django.conf import settings
from django.http import HttpRequest

logger = logging.getLogger(__name__)
_warned = False  # the misconfiguration warning is logged once per process


def ip_normalise(value: str) -> str | None:
    """`value` as a canonical IP address ("1.2.3.4", "2001:db8::1"), without a port; None if junk."""
    value = value.strip()
    if value.startswith("["):  # "[2001:db8::1]:443"
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # "1.2.3.4:5678"
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return str(getattr(address, "ipv4_mapped", None) or address)


def client_ip(request: HttpRequest) -> str | None:
    remote = ip_normalise(request.META.get("REMOTE_ADDR") or "")
    proxies: int = settings.AUDITLOG_TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    address = ip_normalise(forwarded[-proxies]) if len(forwarded) >= proxies else None
    if address is None:
        global _warned
        if not _warned:
            _warned = True
            logger.warning(
                "AUDITLOG_TRUSTED_PROXIES=%d but X-Forwarded-For %r has no valid address in that position; "
                "using REMOTE_ADDR %s (is the setting right?). Logged once per process.",
                proxies,
                request.META.get("HTTP_X_FORWARDED_FOR", "")[:200],
                remote,
            )
        return remote
    return address
