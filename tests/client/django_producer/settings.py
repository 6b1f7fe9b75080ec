"""A producer app for the Django integration's live tests: its own SQLite (or PostgreSQL)
database, the auditlog_client app and middleware, and a shop app with registered models."""

import os
from urllib.parse import urlsplit

SECRET_KEY = "producer-test-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "auditlog_client.django",
    "tests.client.django_producer.shop",
]
MIDDLEWARE = [
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "auditlog_client.django.middleware.AuditContextMiddleware",
]
ROOT_URLCONF = "tests.client.django_producer.urls"
if os.environ.get("PRODUCER_DATABASE_URL"):  # postgres://user@host:port/name
    _url = urlsplit(os.environ["PRODUCER_DATABASE_URL"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username,
            "HOST": _url.hostname,
            "PORT": _url.port,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("PRODUCER_DB", "/tmp/producer.sqlite3"),
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUDITLOG_CLIENT = {
    "URL": os.environ.get("AUDITLOG_URL", "http://127.0.0.1:9"),
    "TOKEN": os.environ.get("AUDITLOG_TOKEN", "none"),
    "TRUSTED_PROXIES": 1,
    "SECRET_FIELDS": ("pin",),
}
