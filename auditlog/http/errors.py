"""The one JSON error shape: {"error": {"code", "message", "fields"?, "request_id"}} for every non-2xx."""

from django.conf import settings
from django.http import JsonResponse

from auditlog.monitoring.logs import REQUEST_ID

BAD_REQUEST = "bad_request"
INVALID_JSON = "invalid_json"
VALIDATION_ERROR = "validation_error"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
REQUEST_TIMEOUT = "request_timeout"
CONFLICT = "conflict"
PAYLOAD_TOO_LARGE = "payload_too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
SERVICE_UNAVAILABLE = "service_unavailable"
INTERNAL_ERROR = "internal_error"

STATUS = {
    BAD_REQUEST: 400,
    INVALID_JSON: 400,
    VALIDATION_ERROR: 400,
    UNAUTHORIZED: 401,
    FORBIDDEN: 403,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    REQUEST_TIMEOUT: 408,
    CONFLICT: 409,
    PAYLOAD_TOO_LARGE: 413,
    UNSUPPORTED_MEDIA_TYPE: 415,
    INTERNAL_ERROR: 500,
    SERVICE_UNAVAILABLE: 503,
}

MSG_NOT_FOUND = "No such resource."
MSG_BAD_REQUEST = "The request is malformed (an unknown Host, or a header Django refuses)."
MSG_FORBIDDEN = "Forbidden."
MSG_INTERNAL = (
    "Internal error. The request was not acknowledged; retrying with the same idempotency key is safe."
)
MSG_UNAVAILABLE = "The database is unavailable. Nothing was stored; retry with the same idempotency key."
MSG_IDEMPOTENCY_CONFLICT = "This idempotency key was already used with a different event body."


class ApiError(Exception):
    """Raise anywhere under a view to answer with the error shape."""

    def __init__(self, code: str, message: str, fields: dict[str, list[str]] | None = None, headers=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def as_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


def error_response(error: ApiError) -> JsonResponse:
    body = error.as_dict()
    request_id = REQUEST_ID.get()
    if request_id is not None:  # the same id as the answer's X-Request-ID and its log line
        body["request_id"] = request_id
    response = JsonResponse({"error": body}, status=STATUS[error.code])
    for name, value in error.headers.items():
        response[name] = value
    return response


def unavailable_error() -> ApiError:
    return ApiError(
        SERVICE_UNAVAILABLE,
        MSG_UNAVAILABLE,
        headers={"Retry-After": str(settings.AUDITLOG_RETRY_AFTER_SECONDS)},
    )
