"""Opaque keyset cursors: a signed (occurred_at, id) position, so a forged one is refused."""

from datetime import datetime

from django.core import signing

SALT = "auditlog.cursor.v1"


class InvalidCursor(ValueError):
    pass


def cursor_encode(occurred_at: datetime, pk: int) -> str:
    return signing.dumps([occurred_at.isoformat(), pk], salt=SALT)


def cursor_decode(value: str) -> tuple[datetime, int]:
    try:
        occurred_at, pk = signing.loads(value, salt=SALT)
        return datetime.fromisoformat(occurred_at), int(pk)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise InvalidCursor(str(exc)) from None
