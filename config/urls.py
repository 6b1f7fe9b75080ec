from django.conf import settings
from django.contrib import admin
from django.urls import path

import auditlog.urls
from auditlog import views

urlpatterns = [
    *auditlog.urls.urlpatterns,  # first: the ingest hot path
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]

if settings.AUDITLOG_BENCH_ENDPOINT:  # `make bench` only: the same stack with no database work
    urlpatterns.insert(0, path("bench/empty", views.bench_empty))
