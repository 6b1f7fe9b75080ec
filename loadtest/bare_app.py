"""A bare Django app, the framework's floor for `make bench`: no middleware, no installed apps,
no database, one view that does what /bench/empty does (parse the JSON body, answer 201).

    gunicorn loadtest.bare_app:application -c config/gunicorn.conf.py

Started with the same gunicorn settings as the service, it measures what Django and gunicorn
cost by themselves, so the service's single POST can be reported as a multiple of it.
"""

import json

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import JsonResponse
from django.urls import path
from django.utils import timezone

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only-" + "x" * 40,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
    LOGGING_CONFIG=None,
)


def empty(request):
    json.loads(request.body)
    return JsonResponse(
        {"id": "00000000-0000-0000-0000-000000000000", "received_at": timezone.now()}, status=201
    )


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [path("bench/empty", empty), path("healthz", healthz)]

application = get_wsgi_application()
