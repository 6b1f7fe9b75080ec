"""AuditContextMiddleware: the request record() reads the actor, the client's address, the user
agent and a request id from, unless the call gives them."""

import contextvars
import ipaddress
import uuid

from auditlog_client.django.conf import setting

_request = contextvars.ContextVar("auditlog_client_request", default=None)


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.audit_request_id = _request_id(request.META.get("HTTP_X_REQUEST_ID", ""))
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def current_request():
    return _request.get()


def _request_id(given: str) -> str:
    """The proxy's X-Request-ID when it is a sane token, else a new one."""
    given = given.strip()
    if 0 < len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return uuid.uuid4().hex


def client_ip(request) -> str | None:
    """The service's rule: behind N trusted proxies (TRUSTED_PROXIES), the address the outermost
    one appended to X-Forwarded-For, N from the right; else REMOTE_ADDR."""
    proxies = int(setting("TRUSTED_PROXIES"))
    candidate = request.META.get("REMOTE_ADDR", "")
    if proxies > 0:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if len(forwarded) >= proxies:
            candidate = forwarded[-proxies]
    return _address(candidate) or _address(request.META.get("REMOTE_ADDR", ""))


def _address(value: str) -> str | None:
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return str(getattr(address, "ipv4_mapped", None) or address)
