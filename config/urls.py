from django.conf import settings
from django.contrib import admin
from django.urls import path

import auditlog.urls
from auditlog.http import views
from auditlog.monitoring import views as monitoring_views

urlpatterns = [
    *auditlog.urls.urlpatterns,  # first: the ingest hot path
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]

# Under /api/ even what fails before a view runs (an unknown Host ...) answers in JSON.
handler400 = "auditlog.http.views.bad_request"
handler403 = "auditlog.http.views.permission_denied"
handler404 = "auditlog.http.views.page_not_found"
handler500 = "auditlog.http.views.server_error"

if settings.AUDITLOG_BENCH_ENDPOINT:  # `make bench` only: the same stack with no database work
    urlpatterns.insert(0, path("bench/empty", views.bench_empty))
