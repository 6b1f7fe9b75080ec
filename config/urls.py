from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from auditlog import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("api/", include("auditlog.urls")),
    path("admin/", admin.site.urls),
]

if settings.AUDITLOG_BENCH_ENDPOINT:  # `make bench` only: the same stack with no database work
    urlpatterns.insert(0, path("bench/empty", views.bench_empty))
