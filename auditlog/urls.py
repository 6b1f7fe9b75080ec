from django.urls import path, re_path

from auditlog.http import trail_views, views

# Full paths, added to the root URLconf as they are rather than include()d: a nested resolver
# costs every ingest request a second resolve.
urlpatterns = [
    path("api/v1/events", views.events, name="events"),
    path("api/v1/events/batch", views.events_batch, name="events-batch"),
    path("api/v1/events/<uuid:event_id>", views.event_detail, name="event-detail"),
    path("api/v1/events/<uuid:event_id>/proof", trail_views.inclusion, name="event-proof"),
    path("api/v1/trail/checkpoint", trail_views.checkpoint, name="trail-checkpoint"),
    path("api/v1/trail/consistency", trail_views.consistency, name="trail-consistency"),
    path("api/v1/trail/verifier-keys", trail_views.verifier_keys, name="trail-verifier-keys"),
    path("api/v1/trail/receipt-keys", trail_views.receipt_keys, name="trail-receipt-keys"),
    path("api/v1/openapi.json", views.openapi, name="openapi"),
    # Anything else under /api/ is a JSON 404, whatever DEBUG says.
    re_path(r"^api/", views.api_not_found),
]
