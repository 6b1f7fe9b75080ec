"""The client's copy of the service's event rules (clients/python/auditlog_client/event.schema.json):
what it must hold, from the service's OpenAPI document and limits. `make client-schema` writes it."""

import json
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "clients/python/auditlog_client/event.schema.json"


def expected() -> dict:
    from django.conf import settings

    from auditlog.events.datetimes import MAX_FUTURE_SKEW
    from auditlog.events.metadata import MAX_METADATA_BYTES, MAX_METADATA_DEPTH
    from auditlog.http.openapi import openapi_document

    schemas = openapi_document()["components"]["schemas"]
    return {
        "Event": schemas["Event"],
        "MetadataValue": schemas["MetadataValue"],
        "limits": {
            "metadata_bytes": MAX_METADATA_BYTES,
            "metadata_depth": MAX_METADATA_DEPTH,
            "future_skew_seconds": int(MAX_FUTURE_SKEW.total_seconds()),
            "batch_events": settings.AUDITLOG_MAX_BATCH_EVENTS,
            "batch_bytes": settings.AUDITLOG_MAX_BATCH_BYTES,
            "event_bytes": settings.AUDITLOG_MAX_EVENT_BYTES,
        },
    }


def text() -> str:
    return json.dumps(expected(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    import django

    django.setup()
    SHIPPED.write_text(text())
    print(f"wrote {SHIPPED}")
