"""The admin: API keys (create, revoke) and audit events (read-only, built for millions of rows)."""

from django.contrib import admin

from auditlog.admin import api_keys, events  # noqa: F401  (registers the ModelAdmins)

admin.site.site_url = None  # no "View site": this service has no site besides the admin and the API
admin.site.index_template = "admin/auditlog/index.html"  # a line per source above the apps
