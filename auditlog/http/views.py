import json
from dataclasses import replace

from django.conf import settings
from django.db import OperationalError, connection
from django.http import JsonResponse
from django.utils import timezone
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from auditlog.db.replica import reads_from_replica
from auditlog.events.validation import DuplicateKeys, ValidationFailed, event_validate
from auditlog.http import errors
from auditlog.http.endpoint import api_route, parse_json_object, requires_scope
from auditlog.http.openapi import openapi_document
from auditlog.http.readiness import database_ready
from auditlog.ingest.services import CONFLICT, IdempotencyConflict, event_create, events_create_batch
from auditlog.models import ActionLog, Scope
from auditlog.monitoring import metrics
from auditlog.reading.filters import event_filters_parse
from auditlog.reading.keyset import cursor_encode
from auditlog.reading.selectors import event_get, event_list
from auditlog.reading.serialization import event_as_dict, json_timestamp
from auditlog.trail.receipt import receipt_sign, receipt_signer

MSG_BATCH_EVENTS = "Must be a list of 1 to {limit} events."
MSG_BATCH_HEADER = "Idempotency-Key does not apply to a batch; set idempotency_key on each event."
MSG_BATCH_FIELDS = 'A batch is {"events": [...]} and nothing else.'
# Invalid events of a batch whose errors name their fields; the rest say only that they are invalid.
MAX_DETAILED_ITEMS = 100


def _ack(event: ActionLog, timestamps: dict) -> dict:
    """An acknowledgement. `timestamps` caches received_at's JSON text: a batch's new events
    share one, and formatting it once instead of 1,000 times is measurable."""
    received_at = timestamps.get(event.received_at)
    if received_at is None:
        received_at = timestamps[event.received_at] = json_timestamp(event.received_at)
    return {"id": str(event.uuid), "received_at": received_at}


def _receipt_wanted(request) -> bool:
    """`Prefer: receipt` (RFC 7240: preferences separated by commas, parameters after ';')."""
    prefer = request.META.get("HTTP_PREFER")
    return prefer is not None and any(
        token.split(";")[0].split("=")[0].strip().lower() == "receipt" for token in prefer.split(",")
    )


def _answer(request, data: dict, status: int, source: str, acks: list[tuple[str, str, str]]) -> JsonResponse:
    """The answer, with a signed receipt of `acks` ((id, received_at, payload_hash) of each event
    acknowledged) when the producer asked for one and the service has a receipt key."""
    signer = receipt_signer() if acks and _receipt_wanted(request) else None
    if signer is not None:
        data["receipt"] = receipt_sign(signer, source, acks)
    response = JsonResponse(data, status=status)
    if signer is not None:
        response["Preference-Applied"] = "receipt"
    return response


def _invalid(failure: ValidationFailed) -> errors.ApiError:
    return errors.ApiError(errors.VALIDATION_ERROR, failure.message, failure.fields)


def _conflict() -> errors.ApiError:
    return errors.ApiError(errors.CONFLICT, errors.MSG_IDEMPOTENCY_CONFLICT)


@requires_scope(Scope.WRITE, body_limit="AUDITLOG_MAX_EVENT_BYTES")
def event_create_view(request, api_key, body):
    data, duplicates = parse_json_object(request, body)
    request.auditlog_event_count = 1
    try:
        header_key = request.META.get("HTTP_IDEMPOTENCY_KEY")
        event = event_validate(data, header_key=header_key, duplicates=duplicates)
        outcome = event_create(source=api_key, event=event)
    except ValidationFailed as failure:
        metrics.count_events(api_key.name, "rejected")
        raise _invalid(failure) from None
    except IdempotencyConflict:
        metrics.count_events(api_key.name, "conflict")
        raise _conflict() from None
    metrics.count_events(api_key.name, "accepted" if outcome.status == 201 else "replayed")
    ack = _ack(outcome.event, {})
    return _answer(
        request, ack, outcome.status, api_key.prefix, [(ack["id"], ack["received_at"], event.payload_hash)]
    )


@requires_scope(Scope.WRITE, body_limit="AUDITLOG_MAX_BATCH_BYTES")
def event_batch_view(request, api_key, body):
    data, duplicates = parse_json_object(request, body)
    items = data.get("events")
    limit = settings.AUDITLOG_MAX_BATCH_EVENTS
    if data.keys() - {"events"} or type(data) is DuplicateKeys:
        raise errors.ApiError(errors.VALIDATION_ERROR, MSG_BATCH_FIELDS, {"events": [MSG_BATCH_FIELDS]})
    if not isinstance(items, list) or not 1 <= len(items) <= limit:
        message = MSG_BATCH_EVENTS.format(limit=limit)
        raise errors.ApiError(errors.VALIDATION_ERROR, message, {"events": [message]})
    if "HTTP_IDEMPOTENCY_KEY" in request.META:
        raise errors.ApiError(errors.VALIDATION_ERROR, MSG_BATCH_HEADER)

    results, valid, positions, now = [None] * len(items), [], [], timezone.now()
    invalid = 0
    for index, item in enumerate(items):
        try:
            valid.append(event_validate(item, now=now, duplicates=duplicates))
            positions.append(index)
        except ValidationFailed as failure:
            invalid += 1
            error = _invalid(failure).as_dict()
            if invalid > MAX_DETAILED_ITEMS:  # the answer stays small whatever the batch
                error.pop("fields", None)
            results[index] = {"index": index, "status": 400, "error": error}
    outcomes = events_create_batch(source=api_key, events=valid) if valid else []
    timestamps, acks = {}, []
    results_count = {201: 0, 200: 0, CONFLICT: 0}
    for index, event, outcome in zip(positions, valid, outcomes, strict=True):
        results_count[outcome.status] += 1
        if outcome.status == CONFLICT:
            results[index] = {"index": index, "status": CONFLICT, "error": _conflict().as_dict()}
        else:
            ack = _ack(outcome.event, timestamps)
            results[index] = {"index": index, "status": outcome.status, **ack}
            acks.append((ack["id"], ack["received_at"], event.payload_hash))
    request.auditlog_event_count = len(items)
    for result, count in (
        ("accepted", results_count[201]),
        ("replayed", results_count[200]),
        ("conflict", results_count[CONFLICT]),
        ("rejected", invalid),
    ):
        metrics.count_events(api_key.name, result, count)
    return _answer(request, {"results": results}, 200, api_key.prefix, acks)


@reads_from_replica
@requires_scope(Scope.READ)
def event_list_view(request, api_key):
    try:
        filters = event_filters_parse(request.GET)
    except ValidationFailed as failure:
        raise _invalid(failure) from None
    if not api_key.reads_every_source:
        filters = replace(filters, source_id=api_key.pk)
    page, after = event_list(filters)
    next_cursor = cursor_encode(*after, filters.scope) if after else None
    return JsonResponse({"results": [event_as_dict(event) for event in page], "next_cursor": next_cursor})


@reads_from_replica
@requires_scope(Scope.READ)
def event_detail_view(request, api_key, event_id):
    event = event_get(event_id)
    # Another source's event, to a key that reads its own: as if it did not exist.
    if event is None or not (api_key.reads_every_source or event.source_id == api_key.pk):
        raise errors.ApiError(errors.NOT_FOUND, errors.MSG_NOT_FOUND)
    return JsonResponse(event_as_dict(event))


def openapi_view(request):
    """The OpenAPI 3.1 document of this API; no key needed."""
    return JsonResponse(openapi_document(), json_dumps_params={"indent": 1})


events = api_route(GET=event_list_view, POST=event_create_view)
events_batch = api_route(POST=event_batch_view)
event_detail = api_route(GET=event_detail_view)
openapi = api_route(GET=openapi_view)


@csrf_exempt  # a POST to an unknown API path is a JSON 404, never the CSRF failure page
def api_not_found(request, *args, **kwargs):
    raise errors.ApiError(errors.NOT_FOUND, errors.MSG_NOT_FOUND)


def _healthz(request):
    return JsonResponse({"status": "ok"})


def _readyz(request):
    """Ready when the database answers a query within AUDITLOG_READYZ_TIMEOUT."""
    if not database_ready(settings.AUDITLOG_READYZ_TIMEOUT):
        raise OperationalError("the database did not answer the readiness probe")
    return JsonResponse({"status": "ok", "database": connection.vendor})


healthz = api_route(GET=_healthz)
readyz = api_route(GET=_readyz)


@csrf_exempt  # benchmark only: see AUDITLOG_BENCH_ENDPOINT
def bench_empty(request):
    """The framework's own ceiling for `make bench`: parse the JSON body, answer 201, no database."""
    json.loads(request.body)
    return JsonResponse(
        {"id": "00000000-0000-0000-0000-000000000000", "received_at": timezone.now()}, status=201
    )


# Django's own error views (config/urls.py handler400 ...), for what fails before a view runs:
# under /api/ they answer in the error shape too, never HTML.


def _api_or(default, code: str, message: str):
    def handler(request, *args, **kwargs):
        if request.path_info.startswith("/api/"):
            return errors.error_response(errors.ApiError(code, message))
        return default(request, *args, **kwargs)

    return handler


bad_request = _api_or(defaults.bad_request, errors.BAD_REQUEST, errors.MSG_BAD_REQUEST)
permission_denied = _api_or(defaults.permission_denied, errors.FORBIDDEN, errors.MSG_FORBIDDEN)
page_not_found = _api_or(defaults.page_not_found, errors.NOT_FOUND, errors.MSG_NOT_FOUND)
server_error = _api_or(defaults.server_error, errors.INTERNAL_ERROR, errors.MSG_INTERNAL)
