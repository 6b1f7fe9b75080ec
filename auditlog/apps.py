from django.apps import AppConfig


class AuditlogConfig(AppConfig):
    name = "auditlog"
    verbose_name = "Audit log"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate, pre_migrate

        from auditlog import checks  # noqa: F401  (registers the system checks)
        from auditlog.admin import (
            access,
            receivers,  # noqa: F401  (registers the signal receivers)
        )
        from auditlog.db.partitions import partitions_after_migrate
        from auditlog.db.roles import runtime_grants_after_migrate
        from auditlog.db.timeouts import migrate_finished, migrate_started

        access.connect()  # every change of access becomes an audit event
        pre_migrate.connect(migrate_started, dispatch_uid="auditlog.migrate_started")
        post_migrate.connect(migrate_finished, dispatch_uid="auditlog.migrate_finished")
        post_migrate.connect(partitions_after_migrate, sender=self, dispatch_uid="auditlog.partitions")
        post_migrate.connect(
            runtime_grants_after_migrate, sender=self, dispatch_uid="auditlog.runtime_grants"
        )
