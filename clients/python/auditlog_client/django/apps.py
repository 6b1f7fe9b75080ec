from django.apps import AppConfig


class AuditlogClientConfig(AppConfig):
    name = "auditlog_client.django"
    label = "auditlog_client"
    verbose_name = "Audit log outbox"
    default_auto_field = "django.db.models.BigAutoField"
