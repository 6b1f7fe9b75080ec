from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from auditlog.db.roles import exposures, grants, grants_apply, role_exists, runtime_role


class Command(BaseCommand):
    help = (
        "Print (or, with --apply, run) the GRANTs that give the runtime role exactly what the service "
        "needs on PostgreSQL: SELECT and INSERT on events, SELECT on the seal tables, nothing on the "
        "purge permit, SELECT on django_migrations, SELECT/INSERT/UPDATE/DELETE on the rest (keys, "
        "users, sessions). Then say, from the catalog, whether that role can still change or remove "
        "the trail. Run it as the tables' owner (manage.py connects with DATABASE_MAINTENANCE_URL "
        "for it); migrate applies the same GRANTs by itself. The role must exist: CREATE ROLE "
        "auditlog_app LOGIN PASSWORD '...' (docs/roles.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--runtime",
            metavar="ROLE",
            help="The role the service connects as (default: DATABASE_RUNTIME_ROLE, or DATABASE_URL's user).",
        )
        parser.add_argument(
            "--apply", action="store_true", help="Run the statements instead of printing them."
        )

    def handle(self, *args, runtime, apply, **options):
        if connection.vendor != "postgresql":
            raise CommandError(
                "SQLite has no roles: whoever can write the database file can do anything to it, "
                "triggers included. Production runs PostgreSQL with two roles (docs/roles.md)."
            )
        role = runtime or runtime_role()
        if not role_exists(role):
            raise CommandError(f"Role {role} does not exist: CREATE ROLE {role} LOGIN PASSWORD '...' first.")
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            owner = cursor.fetchone()[0]
        if role == owner:
            raise CommandError(
                f"{role} is the role this command connects as, the tables' owner: the runtime role must "
                "be another one (an owner can disable its tables' triggers). Set DATABASE_URL to the "
                "runtime role's URL and DATABASE_MAINTENANCE_URL to the owner's, or pass --runtime."
            )
        if not apply:
            self.stdout.write(f"-- the runtime role {role}'s privileges, run as {owner}, the tables' owner")
            for statement in grants(role):
                self.stdout.write(f"{statement};")
            return
        with transaction.atomic():
            statements = grants_apply(role)
        self.stdout.write(f"Ran {len(statements)} statements as {owner}.")
        found = exposures(role)
        if found:
            raise CommandError(f"{role} can still change or remove the trail: {'; '.join(found)}.")
        self.stdout.write(
            self.style.SUCCESS(f"{role} can append events and read; it cannot change or remove the trail.")
        )
