"""Signed receipts: a producer that asks for one (`Prefer: receipt`) gets, with the API's answer
to a POST, a C2SP signed note saying the service accepted its events, so that it can later
prove it whatever becomes of the database. Signed with the receipt key (AUDITLOG_RECEIPT_KEY),
which the web processes hold, not the trail key, which stays with the sealer.

    auditlog receipt v1
    origin <the receipt key's name>
    source <the API key's prefix>
    event <id> <received_at> <payload_hash>
    ...

One `event` line per event the answer acknowledges (stored, or replayed: the original's id and
time), in the answer's order. The standard library and `cryptography` only: the offline
verifier reads receipts too (docs/trail-format.md).
"""

import functools
from dataclasses import dataclass

from auditlog.trail.note import NoteError, Signer, Verifier, note_open, verifiers_of

HEADER = "auditlog receipt v1"


@dataclass(frozen=True)
class Receipt:
    origin: str
    source: str
    events: tuple[tuple[str, str, str], ...]  # (id, received_at, payload_hash)


def receipt_sign(signer: Signer, source: str, events: list[tuple[str, str, str]]) -> str:
    lines = [HEADER, f"origin {signer.name}", f"source {source}"]
    lines += [
        f"event {event_id} {received_at} {payload_hash}" for event_id, received_at, payload_hash in events
    ]
    return signer.sign("\n".join(lines) + "\n")


def receipt_open(note: str, verifiers: list[Verifier]) -> Receipt:
    """The receipt a note holds, when one of `verifiers` signed it; NoteError otherwise."""
    lines = note_open(note, verifiers).splitlines()
    if len(lines) < 4 or lines[0] != HEADER:
        raise NoteError(f"not a receipt: its first line is not {HEADER!r}, or it names no event")
    fields = [line.split(" ") for line in lines[1:]]
    if fields[0][0] != "origin" or len(fields[0]) != 2 or fields[1][0] != "source" or len(fields[1]) != 2:
        raise NoteError("not a receipt: origin and source lines expected after the first")
    if any(len(parts) != 4 or parts[0] != "event" for parts in fields[2:]):
        raise NoteError("not a receipt: every line after the source is `event <id> <received_at> <hash>`")
    return Receipt(fields[0][1], fields[1][1], tuple(tuple(parts[1:]) for parts in fields[2:]))


def receipt_signer() -> Signer | None:
    """AUDITLOG_RECEIPT_KEY, or the file AUDITLOG_RECEIPT_KEY_FILE names; None when neither is
    set (no receipts). Parsed once per process and key."""
    from django.conf import settings

    text = settings.AUDITLOG_RECEIPT_KEY
    if not text and settings.AUDITLOG_RECEIPT_KEY_FILE:
        text = _key_file(settings.AUDITLOG_RECEIPT_KEY_FILE)
    return _signer(text.strip()) if text else None


def receipt_verifiers() -> list[Verifier]:
    """The receipt key's verifier key (when set), then AUDITLOG_RECEIPT_VERIFIER_KEYS."""
    from django.conf import settings

    return verifiers_of(receipt_signer(), settings.AUDITLOG_RECEIPT_VERIFIER_KEYS)


@functools.lru_cache(maxsize=4)
def _key_file(path: str) -> str:
    with open(path) as file:
        return file.read()


@functools.lru_cache(maxsize=4)
def _signer(text: str) -> Signer:
    return Signer.parse(text)
