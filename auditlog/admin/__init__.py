"""The admin: API keys (create, revoke) and audit events (read-only, built for millions of rows)."""

from auditlog.admin import api_keys, events  # noqa: F401  (registers the ModelAdmins)
