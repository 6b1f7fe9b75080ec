from django.urls import path, re_path

from auditlog import views

urlpatterns = [
    path("v1/events", views.events, name="events"),
    path("v1/events/batch", views.events_batch, name="events-batch"),
    path("v1/events/<uuid:event_id>", views.event_detail, name="event-detail"),
    # Anything else under /api/ is a JSON 404, whatever DEBUG says.
    re_path(r"^.*$", views.api_not_found),
]
