"""Opaque keyset cursors: a signed (occurred_at, id) position, so a forged one is refused, bound
to the filters of the list it came from, so it cannot page through another list."""

from datetime import datetime

from django.core import signing

SALT = "auditlog.cursor.v2"  # v2: with the filters' scope (v1 cursors are refused as invalid)


class InvalidCursor(ValueError):
    pass


class CursorOfAnotherList(InvalidCursor):
    pass


def cursor_encode(occurred_at: datetime, pk: int, scope: str = "") -> str:
    """`scope` names the list's filters (auditlog.reading.filters); "" is the unfiltered list."""
    return signing.dumps([occurred_at.isoformat(), pk, scope], salt=SALT)


def cursor_decode(value: str, scope: str = "") -> tuple[datetime, int]:
    try:
        occurred_at, pk, issued_for = signing.loads(value, salt=SALT)
        position = datetime.fromisoformat(occurred_at), int(pk)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise InvalidCursor(str(exc)) from None
    if issued_for != scope:
        raise CursorOfAnotherList(f"issued for {issued_for!r}, used with {scope!r}")
    return position
