"""The runtime role as an attacker, and what the checks say about a role that could succeed.

PostgreSQL: every attack logs in as the runtime role itself (tests/pg_roles.py; the service's
own credentials), against a committed, sealed and purged trail, and must be refused with
"insufficient privilege" (SQLSTATE 42501) leaving every row of the trail as it was. SQLite has no
roles: what it can and cannot stop is at the end.
"""

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from auditlog import checks
from auditlog.db import roles
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.models import ActionLog
from auditlog.trail.append_only import GUARDED_TABLES, PERMIT_TABLE, delete_permit_grant
from auditlog.trail.note import Signer
from auditlog.trail.retention import events_purge, events_purge_plan
from auditlog.trail.tree import tree_append
from auditlog.trail.tree_verify import tree_verify
from tests.conftest import as_owner, requires_postgres, requires_sqlite, runtime_password, two_roles

EVENTS = "auditlog_actionlog"
SEAL_TABLES = (
    "auditlog_trailleaf",
    "auditlog_trailnode",
    "auditlog_checkpoint",
    "auditlog_retentionrecord",
)
INSUFFICIENT_PRIVILEGE = "42501"
ROOT = Path(__file__).resolve().parent.parent

requires_two_roles = pytest.mark.skipif(
    not two_roles(), reason="needs PostgreSQL with two roles (make test-postgres)"
)


TRAIL_KEY = Signer.generate("roles.example/log").text()


def seal():
    upto = ActionLog.objects.order_by("-id").values_list("id", flat=True).first()
    return tree_append(upto_id=upto, block_size=100)


@pytest.fixture
def seal_key(settings):
    settings.AUDITLOG_TRAIL_KEY = TRAIL_KEY
    settings.AUDITLOG_SEAL_OLD_KEYS = []
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0


def trail_create() -> int:
    """A trail with events, seals, checkpoints and an anchor (a purge ran); the first kept event."""
    with as_owner():
        call_command("auditlog_demo", "--count", "300", "--seed", "12", stdout=io.StringIO())
        tree_append(
            upto_id=ActionLog.objects.order_by("-id").values_list("id", flat=True).first(), block_size=100
        )
        events_purge(events_purge_plan(older_than_days=30), batch_size=100)
    return ActionLog.objects.order_by("id").values_list("id", flat=True).first()


def trail_rows() -> dict[str, list]:
    """Every row of the trail's tables, read as the owner."""
    with as_owner(), connection.cursor() as cursor:
        rows = {}
        for table in GUARDED_TABLES:
            cursor.execute(f"SELECT * FROM {table} ORDER BY 1")
            rows[table] = cursor.fetchall()
        return rows


def runtime_connect() -> psycopg.Connection:
    """A login as the runtime role: the credentials the web service holds."""
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=two_roles(),
        password=runtime_password() or None,
        dbname=settings["NAME"],
        autocommit=True,
        connect_timeout=5,
    )


UPDATE = f"UPDATE {EVENTS} SET actor_id = 'mallory' WHERE id = {{event}}"
DELETE = f"DELETE FROM {EVENTS} WHERE id = {{event}}"
PERMIT = f"INSERT INTO {PERMIT_TABLE} (granted_by) VALUES ('mallory')"

ATTACKS = {
    "update an event": [UPDATE],
    "delete an event": [DELETE],
    "truncate the events": [f"TRUNCATE {EVENTS} CASCADE"],
    "MERGE ... THEN DELETE": [
        f"MERGE INTO {EVENTS} e USING (SELECT {{event}}::bigint AS id) s ON e.id = s.id"
        " WHEN MATCHED THEN DELETE"
    ],
    "upsert over an event": [
        f"INSERT INTO {EVENTS} SELECT * FROM {EVENTS} WHERE id = {{event}}"
        " ON CONFLICT (id, received_at) DO UPDATE SET actor_id = 'mallory'"
    ],
    # the events' partitions, by name (docs/scale.md)
    "delete from the event's partition": ["DELETE FROM {partition} WHERE id = {event}"],
    "update in the event's partition": ["UPDATE {partition} SET actor_id = 'mallory' WHERE id = {event}"],
    "truncate the event's partition": ["TRUNCATE {partition}"],
    "detach the event's partition": [f"ALTER TABLE {EVENTS} DETACH PARTITION {{partition}}"],
    "drop the event's partition": ["DROP TABLE {partition}"],
    "forget the idempotency keys": ["DELETE FROM auditlog_eventkey"],
    "disable the triggers, then update": [f"ALTER TABLE {EVENTS} DISABLE TRIGGER USER", UPDATE],
    "drop the trigger, then update": [f"DROP TRIGGER auditlog_append_only ON {EVENTS}", UPDATE],
    "replace the trigger function": [
        "CREATE OR REPLACE FUNCTION auditlog_append_only() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN OLD; END $$",
        DELETE,
    ],
    "drop the trigger function": ["DROP FUNCTION auditlog_append_only() CASCADE", UPDATE],
    "self-granted purge permit": [PERMIT, DELETE],
    "a temporary table posing as the permit": [
        f"CREATE TEMPORARY TABLE {PERMIT_TABLE}"
        " (granted_by text, transaction_id bigint DEFAULT txid_current())",
        PERMIT,
        DELETE,
    ],
    "triggers off with session_replication_role": ["SET session_replication_role = replica", DELETE],
    "grant itself UPDATE": [f"GRANT UPDATE ON {EVENTS} TO CURRENT_USER", UPDATE],
    "become the owner": ["SET ROLE {owner}", UPDATE],
    "take the table over": [f"ALTER TABLE {EVENTS} OWNER TO CURRENT_USER"],
    "rename the table away": [f"ALTER TABLE {EVENTS} RENAME TO auditlog_actionlog_gone"],
    "drop the table": [f"DROP TABLE {EVENTS} CASCADE"],
    "a rule of its own": [f"CREATE RULE mallory AS ON INSERT TO {EVENTS} DO INSTEAD NOTHING"],
    "a trigger of its own": [
        f"CREATE TRIGGER mallory BEFORE INSERT ON {EVENTS}"
        " FOR EACH ROW EXECUTE FUNCTION auditlog_append_only()"
    ],
    "a function shadowing a built-in": [
        "CREATE FUNCTION public.txid_current() RETURNS bigint LANGUAGE sql AS 'SELECT 0'"
    ],
}
COLUMNS = ("leaf_hash", "hash", "note", "policy")
for table, column in zip(SEAL_TABLES, COLUMNS, strict=True):
    ATTACKS |= {
        f"update {table}": [f"UPDATE {table} SET {column} = {column}"],
        f"delete from {table}": [f"DELETE FROM {table}"],
        f"truncate {table}": [f"TRUNCATE {table}"],
        f"forge a row in {table}": [f"INSERT INTO {table} SELECT * FROM {table} LIMIT 1"],
        f"disable the triggers of {table}": [f"ALTER TABLE {table} DISABLE TRIGGER USER"],
        f"drop the trigger of {table}": [f"DROP TRIGGER auditlog_append_only ON {table}"],
        f"self-granted permit, then delete from {table}": [PERMIT, f"DELETE FROM {table}"],
    }


@requires_two_roles
@pytest.mark.django_db(transaction=True)
def test_the_runtime_role_cannot_change_or_remove_the_trail(seal_key):
    event = trail_create()
    before = trail_rows()
    assert all(before[table] for table in GUARDED_TABLES)  # events, seals, checkpoints, anchor
    owner = connection.settings_dict["USER"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {EVENTS} WHERE id = %s", [event])
        partition = cursor.fetchone()[0]
    assert partition != EVENTS  # a partition of it
    succeeded = []
    with runtime_connect() as attacker:
        assert attacker.execute("SELECT current_user").fetchone()[0] == two_roles()
        for name, statements in ATTACKS.items():
            try:
                with attacker.transaction():
                    for statement in statements:
                        attacker.execute(statement.format(event=event, owner=owner, partition=partition))
            except psycopg.Error as exc:
                if exc.sqlstate != INSUFFICIENT_PRIVILEGE:
                    succeeded.append(f"{name}: refused for another reason, {exc.sqlstate} {exc}")
            else:
                succeeded.append(f"{name}: went through")

    assert not succeeded, "\n".join(succeeded)
    assert trail_rows() == before
    assert tree_verify().ok


@requires_two_roles
@pytest.mark.django_db(transaction=True)
def test_the_runtime_role_appends_and_reads(seal_key):
    """What the service needs, the runtime role has: the same login adds events and reads the trail."""
    event = trail_create()
    with runtime_connect() as runtime:
        runtime.execute(
            f"INSERT INTO {EVENTS} (uuid, occurred_at, received_at, actor_id, actor_type, actor_name, action,"
            " target_type, target_id, target_name, outcome, ip_address, user_agent, metadata, source_id,"
            " idempotency_key, payload_hash)"
            " SELECT gen_random_uuid(), occurred_at, now(), actor_id, actor_type, actor_name, action,"
            " target_type, target_id, target_name, outcome, ip_address, user_agent, metadata, source_id,"
            f" NULL, payload_hash FROM {EVENTS} WHERE id = %s",
            [event],
        )
        for table in GUARDED_TABLES:
            runtime.execute(f"SELECT count(*) FROM {table}").fetchone()


@requires_two_roles
@pytest.mark.django_db
def test_the_owner_cannot_pass_a_temporary_table_off_as_the_permit(maintenance_role):
    """The guard reads the permit table by its schema, with pg_temp searched last: a temporary
    table of the same name, which any role may create, permits nothing."""
    call_command("auditlog_demo", "--count", "5", "--seed", "3", stdout=io.StringIO())
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {PERMIT_TABLE} (granted_by text, transaction_id bigint)")
        cursor.execute(f"INSERT INTO pg_temp.{PERMIT_TABLE} VALUES ('mallory', txid_current())")
        with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
            cursor.execute(f"DELETE FROM {EVENTS}")


# --- what the checks say ----------------------------------------------------------------------


@requires_two_roles
@pytest.mark.django_db
def test_the_suites_runtime_role_has_nothing_to_report():
    assert roles.exposures(two_roles()) == []
    assert checks.runtime_role_problems("default") == []
    assert checks.guard_problems("default") == []


@requires_two_roles
@pytest.mark.django_db
@pytest.mark.parametrize(
    "grant, named",
    [
        (f"GRANT UPDATE ON {EVENTS} TO {{role}}", f"has UPDATE on {EVENTS}"),
        (f"GRANT DELETE, TRUNCATE ON {EVENTS} TO {{role}}", f"has DELETE, TRUNCATE on {EVENTS}"),
        (f"GRANT INSERT ON {PERMIT_TABLE} TO {{role}}", f"has INSERT on {PERMIT_TABLE}"),
        ("GRANT INSERT ON auditlog_checkpoint TO {role}", "has INSERT on auditlog_checkpoint"),
        ("GRANT CREATE ON SCHEMA public TO {role}", "can create objects in schema public"),
        (
            f"GRANT CREATE ON SCHEMA public TO {{role}}; ALTER TABLE {EVENTS} OWNER TO {{role}}",
            f"owns {EVENTS}",
        ),
    ],
)
def test_a_runtime_role_that_can_change_events_is_flagged(maintenance_role, grant, named):
    with connection.cursor() as cursor:
        for statement in grant.format(role=two_roles()).split("; "):
            cursor.execute(statement)  # undone with the test's transaction

    (problem,) = checks.runtime_role_problems("default")

    assert problem.id == "auditlog.W003"
    assert named in problem.msg
    out = io.StringIO()
    call_command("check", "--database", "default", stdout=out, stderr=out)
    assert "auditlog.W003" in out.getvalue()


@requires_postgres
@pytest.mark.django_db
def test_a_superuser_as_runtime_role_is_flagged(settings):
    settings.AUDITLOG_RUNTIME_ROLE = "postgres"

    (problem,) = checks.runtime_role_problems("default")

    assert "postgres is a superuser" in problem.msg


@pytest.mark.django_db
def test_a_disabled_or_dropped_trigger_is_an_error(maintenance_role):
    """The owner can turn a guard off (so can whoever writes a SQLite file): the check says so."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE auditlog_trailnode DISABLE TRIGGER auditlog_append_only")
        else:
            cursor.execute("DROP TRIGGER auditlog_trailnode_no_update")

    (problem,) = checks.guard_problems("default")

    assert problem.id == "auditlog.E008"
    missing = "auditlog_trailnode: auditlog_append_only" if connection.vendor == "postgresql" else ""
    assert (missing or "auditlog_trailnode_no_update") in problem.msg


# --- SQLite -----------------------------------------------------------------------------------


def events_columns() -> str:
    return ", ".join(field.column for field in ActionLog._meta.concrete_fields)


@requires_sqlite
@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT OR REPLACE INTO {events} ({columns}) SELECT {columns} FROM {events} WHERE id = {event}",
        "REPLACE INTO {events} ({columns}) SELECT {columns} FROM {events} WHERE id = {event}",
        # another id, the same uuid: REPLACE removes the row holding the uuid
        "INSERT OR REPLACE INTO {events} ({columns}) SELECT {others} FROM {events} WHERE id = {event}",
        "INSERT INTO {events} ({columns}) SELECT {columns} FROM {events} WHERE id = {event} "
        "ON CONFLICT (id) DO UPDATE SET actor_id = 'mallory'",
        "UPDATE OR REPLACE {events} SET actor_id = 'mallory' WHERE id = {event}",
        "INSERT OR REPLACE INTO auditlog_trailleaf SELECT * FROM auditlog_trailleaf WHERE event_id = {event}",
        "REPLACE INTO auditlog_checkpoint SELECT * FROM auditlog_checkpoint",
        "UPDATE auditlog_trailnode SET hash = hash",
        "DELETE FROM auditlog_trailleaf",
    ],
)
def test_sqlite_replace_and_upsert_cannot_remove_or_rewrite_the_trail(seal_key, statement):
    call_command("auditlog_demo", "--count", "300", "--seed", "4", stdout=io.StringIO())
    seal()
    event = ActionLog.objects.order_by("id").values_list("id", flat=True).first()
    columns = events_columns()
    others = columns.replace("id, ", "id + 1000000, ", 1)
    before = trail_rows()

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement.format(events=EVENTS, columns=columns, others=others, event=event))

    assert trail_rows() == before


@requires_sqlite
@pytest.mark.django_db(transaction=True)
def test_every_sqlite_connection_the_app_opens_has_recursive_triggers():
    connection.close()
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA recursive_triggers").fetchone() == (1,)


@requires_sqlite
@pytest.mark.django_db
def test_sqlite_cannot_stop_whoever_writes_the_file(seal_key):
    """No roles: a connection to the file can grant itself the permit and drop a trigger. The
    tree still names the event changed, and the check names the missing trigger."""
    call_command("auditlog_demo", "--count", "20", "--seed", "4", stdout=io.StringIO())
    seal()
    event = ActionLog.objects.order_by("id").values_list("id", flat=True)[5]
    with connection.cursor() as cursor:
        with sqlite_writer_queue(), transaction.atomic():
            delete_permit_grant("mallory")
            cursor.execute(f"DELETE FROM {EVENTS} WHERE id = %s", [event])
        cursor.execute("DROP TRIGGER auditlog_no_update")
        cursor.execute(f"UPDATE {EVENTS} SET actor_id = 'mallory' WHERE id = %s", [event + 1])

    assert tree_verify().problems[0] == f"leaf 5: event id {event} was deleted; no retention record covers it"
    assert "auditlog_no_update" in checks.guard_problems("default")[0].msg


@requires_sqlite
@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 shell")
def test_sqlite_dbshell_has_recursive_triggers_too(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_ENV_FILE": "/nonexistent",
        "DJANGO_SECRET_KEY": "k" * 60,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
    }

    def manage(*args, stdin=None):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
        )

    assert manage("migrate", "-v0").returncode == 0
    assert manage("auditlog_demo", "--count", "3").returncode == 0
    shell = manage("dbshell", stdin=f"INSERT OR REPLACE INTO {EVENTS} SELECT * FROM {EVENTS} WHERE id = 1;\n")

    assert shell.returncode != 0
    assert "auditlog_actionlog is append-only: DELETE refused" in shell.stderr


# --- the service's commands, each as the role it runs as ------------------------------------------


def manage(*args, **env):
    """Run manage.py as production does: DATABASE_URL the runtime role's, DATABASE_MAINTENANCE_URL
    the owner's (None: unset)."""
    from tests.live.conftest import server_env

    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server_env(AUDITLOG_TRAIL_KEY=TRAIL_KEY, AUDITLOG_SEAL_DELAY_SECONDS="0", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@requires_two_roles
@pytest.mark.django_db(transaction=True)
def test_commands_run_as_the_role_they_need():
    for args in [
        ("auditlog_demo", "--count", "50"),
        ("auditlog_create_key", "--name", "cli", "--scopes", "read"),
        ("auditlog_seal",),  # manage.py takes DATABASE_MAINTENANCE_URL for it
        ("auditlog_verify",),
        ("auditlog_export", "--format", "jsonl", "--output", "-"),
        ("auditlog_purge", "--older-than", "30"),
        ("auditlog_roles", "--apply"),
        ("auditlog_dbcheck", "--fail-on-warning"),
    ]:
        result = manage(*args)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    created = manage("auditlog_create_key", "--name", "gone", "--scopes", "read").stdout
    prefix = re.search(r"prefix (\S+),", created).group(1)
    revoked = manage("auditlog_revoke_key", prefix)
    assert revoked.returncode == 0, revoked.stderr


@requires_two_roles
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "command", [("auditlog_seal",), ("auditlog_purge", "--older-than", "30"), ("flush", "--noinput")]
)
def test_maintenance_commands_without_the_maintenance_url_say_which_role_they_need(command):
    call_command("auditlog_demo", "--count", "50", "--seed", "1", stdout=io.StringIO())

    result = manage(*command, DATABASE_MAINTENANCE_URL=None)

    assert result.returncode == 1
    assert (
        f"CommandError: {command[0]} changes the trail's tables, which only the maintenance role"
        in result.stderr
    )
    assert ActionLog.objects.count() == 50


@requires_two_roles
@pytest.mark.django_db(transaction=True)
def test_dbcheck_flags_the_owner_used_as_the_runtime_role():
    from tests.live.conftest import database_url

    result = manage(
        "auditlog_dbcheck", DATABASE_URL=database_url(maintenance=True), DATABASE_MAINTENANCE_URL=None
    )

    owner = connection.settings_dict["USER"]
    assert any(
        line.split()[:4] == ["runtime", "role", owner, "WARNING"] for line in result.stdout.splitlines()
    )
    assert (
        f"auditlog.W003: The runtime role {owner} can change or remove the trail: {owner} owns"
        in result.stdout
    )
