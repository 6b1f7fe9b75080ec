"""RFC 3339 date-times as the API takes them: an event's occurred_at, the filters' since and until."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlog.events.rules import Errors, Request, Rule, nullable

MAX_FUTURE_SKEW = timedelta(minutes=5)
MSG_DATETIME = (
    "Must be an RFC 3339 date-time from the year 1970, e.g. 2026-01-31T12:00:00Z or "
    "2026-01-31T13:00:00.250+01:00."
)
MSG_FUTURE = "Must not be more than 5 minutes in the future."

# The date-time grammar of RFC 3339 (section 5.6), "T" and "Z" in either case as it allows, with
# two limits: the year as written is 1970 or later, and seconds stop at 59 (a leap second has no
# representation here). Written for both Python and the OpenAPI document's ECMA-262 `pattern`:
# [0-9], never \d (Python's \d matches every Unicode digit).
DATETIME_RE = re.compile(
    r"(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(\.[0-9]+)?"
    r"([Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
# Past the end of the calendar once in UTC (9999-12-31T23:00:00-05:00): later than any time.
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def datetime_parse(value: Any) -> datetime | None:
    """An RFC 3339 date-time (DATETIME_RE, a real calendar date) as UTC, or None.

    The UTC offset is applied here, so the databases only ever see UTC: any offset RFC 3339
    allows works on both. A time that would fall after the year 9999 once in UTC is
    END_OF_TIME; one before the year 1 cannot be written (the year is 1970 or later).
    """
    match = DATETIME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone, sign, zone_hours, zone_minutes = match.groups()
    offset = timedelta()
    if zone not in ("Z", "z"):
        offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
        offset = -offset if sign == "-" else offset
    microsecond = int(fraction[1:7].ljust(6, "0")) if fraction else 0  # further digits dropped
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microsecond)
    except ValueError:  # 2026-02-30
        return None
    try:
        return (local - offset).replace(tzinfo=UTC)
    except OverflowError:
        return END_OF_TIME


def datetime_schema(description: str) -> dict:
    return {
        "type": "string",
        "format": "date-time",
        "pattern": f"^{DATETIME_RE.pattern}$",
        "description": description,
    }


@dataclass(frozen=True, slots=True)
class DateTime(Rule):
    """An RFC 3339 date-time (datetime_parse), at most MAX_FUTURE_SKEW after the server's clock.
    `if_absent`: what a field left out means, for the document."""

    if_absent: str
    gives = datetime | None

    def validate(self, errors: Errors, path: str, value: Any, request: Request) -> datetime | None:
        if value is None:
            return None
        parsed = datetime_parse(value)
        if parsed is None:
            errors.add(path, MSG_DATETIME)
            return None
        if parsed > request.now + MAX_FUTURE_SKEW:
            errors.add(path, MSG_FUTURE)
        return parsed

    def schema(self) -> dict:
        return nullable(
            datetime_schema(
                "RFC 3339, from the year 1970, seconds up to 59; not more than 5 minutes after "
                f"the server's clock. Default: {self.if_absent}."
            )
        )
