"""GET /metrics: the Prometheus text format, for a bearer key of the `metrics` scope."""

import os

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from auditlog.http import errors
from auditlog.http.endpoint import api_route, requires_scope
from auditlog.models import Scope
from auditlog.monitoring.collectors import DatabaseCollector

_database = CollectorRegistry(auto_describe=False)
_database.register(DatabaseCollector())


@requires_scope(Scope.METRICS)
def _metrics(request, api_key):
    if not settings.AUDITLOG_METRICS:
        raise errors.ApiError(errors.NOT_FOUND, "Metrics are off (AUDITLOG_METRICS=false).")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # gunicorn: every worker's values, added up
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    return HttpResponse(
        generate_latest(counted) + generate_latest(_database), content_type=CONTENT_TYPE_LATEST
    )


metrics = api_route(GET=_metrics)
