"""HTTP plumbing shared by the API views: routing by method, bearer auth, reading JSON."""

import functools
import json
import threading

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from auditlog.db.connections import pooled_connection_release
from auditlog.events.validation import DuplicateKeys
from auditlog.http import errors
from auditlog.http.read_deadline import read_in_time
from auditlog.keys.selectors import api_key_get_by_token
from auditlog.keys.services import api_key_touch
from auditlog.models import SCOPE_SATISFIED_BY

MSG_NO_TOKEN = "Send an API key as `Authorization: Bearer <token>`."
MSG_BAD_TOKEN = "The API key is invalid or revoked."
MSG_SCOPE = "This API key lacks the '{scope}' scope."
MSG_MEDIA_TYPE = "Send the body as application/json (UTF-8)."
MSG_TOO_LARGE = "The body is larger than {limit} bytes."
MSG_BODY_TIMEOUT = "The body did not arrive within {seconds:g} s."
MSG_BAD_JSON = "The body is not valid JSON: {detail}."
MSG_NOT_OBJECT = "The body must be a JSON object."


def api_route(**handlers):
    """One view per path that dispatches on the method: a missing one is a JSON 405.

    HEAD is answered as GET is (the server drops the body), and OPTIONS, without a key, with
    the methods in `Allow` and in a JSON body. The API authenticates each request by bearer
    token and never by cookie, so there is no ambient credential for a cross-site request to
    ride on: it is exempt from CSRF on purpose.
    """
    if "GET" in handlers:
        handlers["HEAD"] = handlers["GET"]
    allowed = ", ".join([*handlers, "OPTIONS"])

    @csrf_exempt
    def view(request, *args, **kwargs):
        handler = handlers.get(request.method)
        if handler is not None:
            return handler(request, *args, **kwargs)
        if request.method == "OPTIONS":
            response = JsonResponse({"allow": allowed.split(", ")})
            response["Allow"] = allowed
            return response
        raise errors.ApiError(errors.METHOD_NOT_ALLOWED, f"Use {allowed}.", headers={"Allow": allowed})

    return view


def requires_scope(scope: str, *, body_limit: str | None = None):
    """Authenticate the bearer token and check its scope; pass the ApiKey to the view.

    With `body_limit` (the name of a setting), the body is then read, within that limit and
    AUDITLOG_BODY_TIMEOUT, and passed to the view as bytes. Authentication comes first, so a
    client without a valid key never gets a thread to wait on its upload; a pooled connection
    goes back to the pool before the read, so a slow upload holds no pool slot either.
    """

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            key = _authenticate(request, scope)
            if body_limit is not None:
                pooled_connection_release()
                kwargs["body"] = read_body(request, getattr(settings, body_limit))
            return view(request, key, *args, **kwargs)

        return wrapper

    return decorator


def _authenticate(request, scope: str):
    # META, not request.headers: that builds a dict of every header on first use.
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized(MSG_NO_TOKEN)
    key = api_key_get_by_token(token.strip())
    if key is None:
        raise _unauthorized(MSG_BAD_TOKEN)
    if not key.scope_set & SCOPE_SATISFIED_BY[scope]:
        raise errors.ApiError(errors.FORBIDDEN, MSG_SCOPE.format(scope=scope))
    api_key_touch(key=key)
    request.auditlog_key_prefix = key.prefix  # for the request's log line
    return key


def _unauthorized(message: str) -> errors.ApiError:
    return errors.ApiError(
        errors.UNAUTHORIZED, message, headers={"WWW-Authenticate": 'Bearer realm="auditlog"'}
    )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


_parsing = threading.local()


def _object_from_pairs(pairs: list) -> dict:
    """Build a JSON object; one that repeats a key becomes a DuplicateKeys, which validation
    refuses where it is, and the decode is marked as having one."""
    data = dict(pairs)
    if len(data) == len(pairs):
        return data
    _parsing.duplicates = True
    return DuplicateKeys(pairs)


# NaN and Infinity are not JSON, and PostgreSQL's jsonb would refuse them later. One decoder
# for every request: json.loads builds a new one per call when given options.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_object_from_pairs)


def read_body(request, max_bytes: int) -> bytes:
    """Read at most max_bytes within AUDITLOG_BODY_TIMEOUT, refusing more (413) before reading
    it where the length is declared, and a body too slow to arrive (408)."""
    too_large = errors.ApiError(errors.PAYLOAD_TOO_LARGE, MSG_TOO_LARGE.format(limit=max_bytes))
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not chunked:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > max_bytes:
            raise too_large
    timeout = settings.AUDITLOG_BODY_TIMEOUT
    # Django's request stream is limited to Content-Length, so without one it reads nothing;
    # the server's wsgi.input decodes the chunks, and we bound the read.
    stream = request.META["wsgi.input"] if chunked else request
    body = read_in_time(request, timeout, lambda: stream.read(max_bytes + 1))
    if body is None:
        # The socket's reading side is shut: gunicorn closes the connection after this answer.
        raise errors.ApiError(errors.REQUEST_TIMEOUT, MSG_BODY_TIMEOUT.format(seconds=timeout))
    if len(body) > max_bytes:
        raise too_large
    return body


def parse_json_object(request, body: bytes) -> tuple[dict, bool]:
    """Return the body as a dict, and whether it repeats a key in any object (as
    event_validate's `duplicates`), or raise the matching 415 / 400 ApiError."""
    charset = request.content_params.get("charset", "utf-8").lower()
    if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
        raise errors.ApiError(errors.UNSUPPORTED_MEDIA_TYPE, MSG_MEDIA_TYPE)
    if json.detect_encoding(body) != "utf-8":  # UTF-16 or 32, or a byte order mark
        raise errors.ApiError(errors.UNSUPPORTED_MEDIA_TYPE, MSG_MEDIA_TYPE)
    _parsing.duplicates = False
    try:
        # Lone surrogates are kept for the validation to name.
        data = _DECODER.decode(body.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as exc:
        raise errors.ApiError(errors.INVALID_JSON, MSG_BAD_JSON.format(detail=exc)) from None
    if not isinstance(data, dict):
        raise errors.ApiError(errors.INVALID_JSON, MSG_NOT_OBJECT)
    return data, _parsing.duplicates
