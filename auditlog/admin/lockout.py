"""What a locked-out admin login gets (AXES_LOCKOUT_CALLABLE): 429, Retry-After, and for how long."""

from math import ceil

from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse
from django.utils.html import escape

PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Too many failed logins</title></head>'
    "<body><h1>Too many failed logins</h1><p>{message}</p></body></html>"
)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """django-axes calls this as (request, original_response, credentials); only the cool-off matters."""
    cool_off = get_cool_off(request)
    seconds = ceil(cool_off.total_seconds()) if cool_off else 0
    if seconds:
        minutes = ceil(seconds / 60)
        message = f"Too many failed logins. Try again in {minutes} minute{'' if minutes == 1 else 's'}."
    else:
        message = "Too many failed logins. Ask an administrator to lift the lockout."
    response = HttpResponse(PAGE.format(message=escape(message)), status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response
