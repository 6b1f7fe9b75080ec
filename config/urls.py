from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from auditlog import views

urlpatterns = [
    path("api/", include("auditlog.urls")),  # first: the ingest hot path resolves in one step
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]

if settings.AUDITLOG_BENCH_ENDPOINT:  # `make bench` only: the same stack with no database work
    urlpatterns.insert(0, path("bench/empty", views.bench_empty))
