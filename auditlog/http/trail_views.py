"""The trail over HTTP (docs/trail-format.md): the latest signed checkpoint, RFC 9162 inclusion
and consistency proofs as JSON with base64 hashes, and the verifier keys of checkpoints and of
receipts, which need no key."""

import base64

from django.http import HttpResponse, JsonResponse

from auditlog.http import errors
from auditlog.http.endpoint import api_route, requires_scope
from auditlog.models import Scope
from auditlog.reading.selectors import event_of_source
from auditlog.trail.receipt import receipt_verifiers
from auditlog.trail.tree import (
    TrailError,
    checkpoint_latest,
    event_inclusion_proof,
    trail_verifiers,
    tree_consistency_proof,
)

MSG_SIZE = "Must be a whole number of leaves, 1 or more."
MSG_NO_CHECKPOINT = "No checkpoint has been signed yet (auditlog_seal with AUDITLOG_TRAIL_KEY)."
MSG_NO_RECEIPTS = "This service signs no receipts (AUDITLOG_RECEIPT_KEY is not set)."
MSG_NOT_SEALED = "No such event in the trail: it does not exist, or is not sealed yet."
TEXT = "text/plain; charset=utf-8"


def _b64(values: list[bytes]) -> list[str]:
    return [base64.b64encode(value).decode() for value in values]


def _size(request, name: str, *, required: bool) -> int | None:
    text = request.GET.get(name)
    if text is None and not required:
        return None
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) < 1:
        raise errors.ApiError(errors.VALIDATION_ERROR, "Invalid query.", {name: [MSG_SIZE]})
    return int(text)


def _no_such_tree(exc: TrailError) -> errors.ApiError:
    """A size the tree does not have (yet), or an event not in that tree: 404, with the reason
    (the query itself is well-formed)."""
    return errors.ApiError(errors.NOT_FOUND, f"No such proof: {exc}.")


@requires_scope(Scope.READ)
def checkpoint_view(request, api_key):
    checkpoint = checkpoint_latest()
    if checkpoint is None:
        raise errors.ApiError(errors.NOT_FOUND, MSG_NO_CHECKPOINT)
    return HttpResponse(checkpoint.note, content_type=TEXT)


@requires_scope(Scope.READ)
def inclusion_view(request, api_key, event_id):
    tree_size = _size(request, "tree_size", required=False)
    # The proof carries the event's leaf, its fields: a key that reads its own source's events
    # gets proofs of those only (another's answers as if it did not exist).
    if not api_key.reads_every_source and not event_of_source(event_id, api_key):
        raise errors.ApiError(errors.NOT_FOUND, MSG_NOT_SEALED)
    try:
        proof = event_inclusion_proof(event_id, tree_size)
    except TrailError as exc:
        raise _no_such_tree(exc) from None
    if proof is None:
        raise errors.ApiError(errors.NOT_FOUND, MSG_NOT_SEALED)
    return JsonResponse(
        {
            "leaf_index": proof.leaf_index,
            "tree_size": proof.tree_size,
            "leaf": base64.b64encode(proof.leaf).decode(),
            "hashes": _b64(proof.hashes),
        }
    )


@requires_scope(Scope.READ)
def consistency_view(request, api_key):
    first, second = _size(request, "first", required=True), _size(request, "second", required=True)
    try:
        hashes = tree_consistency_proof(first, second)
    except TrailError as exc:
        raise _no_such_tree(exc) from None
    return JsonResponse({"first": first, "second": second, "hashes": _b64(hashes)})


def verifier_keys_view(request):
    """The verifier keys of the trail's checkpoints, current first, one per line; no key needed."""
    verifiers = trail_verifiers()
    if not verifiers:
        raise errors.ApiError(errors.NOT_FOUND, MSG_NO_CHECKPOINT)
    return HttpResponse("".join(f"{verifier.text()}\n" for verifier in verifiers), content_type=TEXT)


def receipt_keys_view(request):
    """The verifier keys of receipts, current first, one per line; no key needed."""
    verifiers = receipt_verifiers()
    if not verifiers:
        raise errors.ApiError(errors.NOT_FOUND, MSG_NO_RECEIPTS)
    return HttpResponse("".join(f"{verifier.text()}\n" for verifier in verifiers), content_type=TEXT)


checkpoint = api_route(GET=checkpoint_view)
inclusion = api_route(GET=inclusion_view)
consistency = api_route(GET=consistency_view)
verifier_keys = api_route(GET=verifier_keys_view)
receipt_keys = api_route(GET=receipt_keys_view)
