"""Read replicas (auditlog/db/replica.py). The replica here is a second alias on the test
database (what a replica holds is the primary's committed data), so which reads went where
shows as queries on one alias or the other; tests/live/test_replica.py runs a real streaming
replica."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from auditlog.db import replica
from auditlog.db.replica import (
    REPLICA,
    ReplicaHealth,
    ReplicaRouter,
    ReplicaState,
    replica_lag,
    replica_reads,
)
from auditlog.ingest.services import INTERNAL_SOURCE_NAME
from auditlog.models import ActionLog, ApiKey
from tests.conftest import EVENTS_URL, make_event, requires_postgres
from tests.live.conftest import free_port
from tests.test_settings import run

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
PAGE = 8192
LIST_URL = "/admin/auditlog/actionlog/"
PRINT_DATABASES = (
    "import json, django; django.setup(); from django.conf import settings; "
    "print(json.dumps([settings.DATABASES, settings.DATABASE_ROUTERS], default=str))"
)
POSTGRES = "postgres://app:secret@10.0.0.1:5432/auditlog"


def up(lag=0.0, age=0.0) -> ReplicaState:
    return ReplicaState(up=True, lag=lag, checked_at=time.monotonic() - age)


# --- configuration ------------------------------------------------------------------------------


def test_a_replica_url_on_sqlite_is_refused_with_a_clear_message():
    result = run(["-c", PRINT_DATABASES], DATABASE_URL="sqlite:///db.sqlite3", DATABASE_REPLICA_URL=POSTGRES)

    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_REPLICA_URL is for PostgreSQL streaming replicas" in result.stderr
    assert "SQLite has no replicas: unset DATABASE_REPLICA_URL." in result.stderr


def test_the_replica_alias_is_default_with_the_replica_address_and_a_short_connect_timeout():
    result = run(
        ["-c", PRINT_DATABASES],
        DATABASE_URL=POSTGRES,
        DATABASE_REPLICA_URL="postgres://reader:other@10.0.0.2:6432/auditlog?sslmode=require",
    )
    assert result.returncode == 0, result.stderr
    databases, routers = json.loads(result.stdout)
    default, standby = databases["default"], databases[REPLICA]

    assert routers == ["auditlog.db.replica.ReplicaRouter"]
    assert (standby["HOST"], standby["PORT"], standby["USER"], standby["PASSWORD"]) == (
        "10.0.0.2",
        6432,
        "reader",
        "other",
    )
    assert standby["OPTIONS"] == {**default["OPTIONS"], "connect_timeout": 2, "sslmode": "require"}
    assert {name: standby[name] for name in ("ENGINE", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS")} == {
        name: default[name] for name in ("ENGINE", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS")
    }
    assert standby["TEST"]["MIRROR"] == "default"


def test_without_a_replica_url_there_is_no_alias_and_no_router():
    result = run(["-c", PRINT_DATABASES], DATABASE_URL=POSTGRES)
    assert result.returncode == 0, result.stderr
    databases, routers = json.loads(result.stdout)

    assert list(databases) == ["default"]
    assert routers == []


# --- lag ----------------------------------------------------------------------------------------


def lag(primary_lsn, replay_lsn, replay_time=T - timedelta(seconds=30), in_recovery=True):
    return replica_lag(
        primary_lsn=primary_lsn,
        primary_time=T,
        in_recovery=in_recovery,
        replay_lsn=replay_lsn,
        replay_time=replay_time,
    )


def test_a_replica_that_replayed_all_the_primary_flushed_has_no_lag_however_idle_the_primary():
    assert lag(100 * PAGE + 512, 100 * PAGE + 512, replay_time=T - timedelta(hours=3)) == (0.0, "")


def test_a_replica_behind_lags_by_the_age_of_the_last_commit_it_replayed():
    assert lag(100 * PAGE + 512, 100 * PAGE + 400) == (30.0, "")


def test_a_flush_that_cut_a_record_at_a_page_end_is_no_lag():
    # Seen live: the primary flushed to a page boundary, the replica replayed to 24 bytes before.
    assert lag(101 * PAGE, 101 * PAGE - 24) == (0.0, "")
    assert lag(101 * PAGE + 20, 101 * PAGE - 8) == (0.0, "")  # a page header and 28 bytes of a record


def test_a_whole_record_past_a_page_boundary_is_lag():
    assert lag(101 * PAGE + 24 + 32, 101 * PAGE) == (30.0, "")


def test_a_server_not_in_recovery_is_no_replica():
    assert lag(500, 500, in_recovery=False) == (None, replica.MSG_NOT_STANDBY)


def test_a_replica_behind_that_replayed_no_transaction_has_an_unknown_lag():
    assert lag(500, 400, replay_time=None) == (None, replica.MSG_NO_REPLAY)


# --- health -------------------------------------------------------------------------------------


def test_the_state_is_checked_again_only_after_the_interval(settings):
    settings.DATABASE_REPLICA_CHECK_SECONDS = 60
    checks = []
    health = ReplicaHealth(lambda: checks.append(1) or up())

    states = [health.current() for _ in range(5)]

    assert len(checks) == 1
    assert len(set(states)) == 1


def test_while_one_thread_checks_the_others_use_the_last_state(settings):
    settings.DATABASE_REPLICA_CHECK_SECONDS = 0
    checking, release = threading.Event(), threading.Event()

    def slow_check():
        checking.set()
        release.wait(5)
        return up(lag=1.0)

    health = ReplicaHealth(slow_check)
    health.state = last = up()
    checker = threading.Thread(target=health.current)
    checker.start()
    checking.wait(5)

    assert health.current() is last  # not blocked behind the check
    release.set()
    checker.join()
    assert health.state.lag == 1.0


@pytest.mark.parametrize(
    ("found", "usable"),
    [
        ({"lag": 0.5}, True),
        ({"lag": 9.0, "age": 0.5}, True),
        ({"lag": 9.0, "age": 1.5}, False),  # what the primary may have committed since the check counts
        ({"lag": 11.0}, False),
        ({"lag": None}, False),
        ({"up": False}, False),
        (None, False),
    ],
)
def test_the_replica_is_usable_only_while_known_to_be_within_the_bound(settings, found, usable):
    settings.DATABASE_REPLICA_MAX_LAG_SECONDS = 10
    settings.DATABASE_REPLICA_CHECK_SECONDS = 60
    state = None
    if found is not None:
        age = found.get("age", 0.0)
        state = ReplicaState(found.get("up", True), found.get("lag"), time.monotonic() - age)
    health = ReplicaHealth(lambda: state)
    health.state = state

    assert health.usable() is usable


def test_a_replica_marked_down_is_not_used_until_the_next_check(settings):
    settings.DATABASE_REPLICA_CHECK_SECONDS = 60
    health = ReplicaHealth(up)
    assert health.usable()

    health.mark_down("connection refused")

    assert not health.usable()
    assert health.state.reason == "connection refused"


# --- routing ------------------------------------------------------------------------------------


@pytest.fixture
def fit(monkeypatch):
    monkeypatch.setattr(replica.replica_health, "usable", lambda: True)


@pytest.mark.django_db(transaction=True)  # a test's own transaction would keep every read on the primary
def test_reads_of_the_events_go_to_the_replica_only_inside_a_read_scope(fit):
    router = ReplicaRouter()

    assert router.db_for_read(ActionLog) == "default"
    with replica_reads():
        assert router.db_for_read(ActionLog) == REPLICA
        assert router.db_for_read(ApiKey) == "default"  # a revoked key fails at once
    assert router.db_for_read(ActionLog) == "default"


@pytest.mark.django_db
def test_nothing_inside_a_transaction_reads_the_replica(fit):
    with replica_reads(), transaction.atomic():
        assert ReplicaRouter().db_for_read(ActionLog) == "default"


@pytest.mark.django_db(transaction=True)
def test_reads_go_to_the_primary_while_the_replica_is_unfit(monkeypatch):
    monkeypatch.setattr(replica.replica_health, "usable", lambda: False)

    with replica_reads():
        assert ReplicaRouter().db_for_read(ActionLog) == "default"


@pytest.mark.django_db
def test_writes_and_migrations_never_go_to_the_replica(fit):
    router = ReplicaRouter()
    event = ActionLog()
    event._state.db = REPLICA  # read from the replica

    with replica_reads():
        assert router.db_for_write(ActionLog, instance=event) == "default"
    assert router.allow_migrate(REPLICA, "auditlog") is False
    assert router.allow_migrate("default", "auditlog") is None


# --- the views, on a stand-in replica -----------------------------------------------------------


# The views' tests run on both aliases, with the test's writes committed where the stand-in
# replica's connection sees them.
on_standby = pytest.mark.django_db(transaction=True, databases=["default", REPLICA])


@pytest.fixture(scope="module")
def replica_alias(django_db_setup):
    """The "replica" alias on the test database, defined before a test declares it uses it."""
    connections.settings[REPLICA] = {**connections["default"].settings_dict, "TEST": {"MIRROR": "default"}}
    yield
    connections[REPLICA].close()
    del connections[REPLICA]
    del connections.settings[REPLICA]


@pytest.fixture
def standby(replica_alias, settings, monkeypatch):
    """The replica alias, fit for reads, with the router installed."""
    settings.DATABASE_ROUTERS = ["auditlog.db.replica.ReplicaRouter"]
    monkeypatch.setattr(replica.replica_health, "_check", up)
    monkeypatch.setattr(replica.replica_health, "state", None)
    return connections[REPLICA]


@pytest.fixture
def broken_standby(standby):
    """The replica alias pointing where no database answers."""
    saved = dict(standby.settings_dict)
    standby.close()
    if standby.vendor == "sqlite":
        standby.settings_dict["NAME"] = "/nonexistent/replica.sqlite3"
    else:
        standby.settings_dict.update(HOST="127.0.0.1", PORT=free_port())
    yield standby
    standby.close()
    standby.settings_dict.update(saved)


def event_reads(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("SELECT", "WITH"))]


def reads_events(queries) -> bool:
    return any("auditlog_actionlog" in sql for sql in event_reads(queries))


def seed(api, count=3) -> list[str]:
    events = [make_event(idempotency_key=f"k{n}", actor={"id": f"u{n}"}) for n in range(count)]
    response = api.post("/api/v1/events/batch", {"events": events})
    return [item["id"] for item in response.json()["results"]]


@on_standby
def test_the_api_reads_list_and_detail_from_the_replica(api, standby):
    ids = seed(api)

    with CaptureQueriesContext(standby) as on_replica, CaptureQueriesContext(connection) as on_primary:
        listed = api.get(EVENTS_URL)
        detail = api.get(f"{EVENTS_URL}/{ids[0]}")

    assert listed.status_code == 200 and len(listed.json()["results"]) == 3
    assert detail.status_code == 200 and detail.json()["id"] == ids[0]
    assert reads_events(on_replica.captured_queries)
    assert not reads_events(on_primary.captured_queries)


@on_standby
def test_ingest_and_its_idempotency_look_ups_never_read_the_replica(api, standby):
    seed(api)

    with CaptureQueriesContext(standby) as on_replica:
        replayed = api.post(EVENTS_URL, make_event(idempotency_key="k0", actor={"id": "u0"}))
        conflict = api.post(EVENTS_URL, make_event(idempotency_key="k0", actor={"id": "other"}))
        batch = api.post(
            "/api/v1/events/batch", {"events": [make_event(idempotency_key="k1", actor={"id": "u1"})]}
        )

    assert (replayed.status_code, conflict.status_code, batch.status_code) == (200, 409, 200)
    assert batch.json()["results"][0]["status"] == 200
    assert on_replica.captured_queries == []


@on_standby
def test_a_read_the_replica_fails_is_answered_from_the_primary(api, broken_standby):
    ids = seed(api)

    listed = api.get(EVENTS_URL)
    detail = api.get(f"{EVENTS_URL}/{ids[1]}")

    assert listed.status_code == 200 and [event["id"] for event in listed.json()["results"]] == ids[::-1]
    assert detail.status_code == 200 and detail.json()["id"] == ids[1]


@requires_postgres
@on_standby
def test_a_replica_that_refuses_connections_is_marked_down(api, broken_standby):
    seed(api)

    assert api.get(EVENTS_URL).status_code == 200

    assert not replica.replica_health.usable()
    assert "refused" in replica.replica_health.state.reason


@on_standby
def test_the_admin_list_detail_and_export_read_from_the_replica(admin_client, api, standby):
    seed(api)
    event = ActionLog.objects.latest("id")

    with CaptureQueriesContext(standby) as on_replica, CaptureQueriesContext(connection) as on_primary:
        listing = admin_client.get(LIST_URL)
        detail = admin_client.get(f"{LIST_URL}{event.pk}/change/")
        export = admin_client.get(f"{LIST_URL}export/csv/")
        rows = b"".join(export.streaming_content).decode().splitlines()

    assert (listing.status_code, detail.status_code, export.status_code) == (200, 200, 200)
    assert len(rows) == 1 + ActionLog.objects.count()  # the views record themselves too
    assert reads_events(on_replica.captured_queries)
    assert not reads_events(on_primary.captured_queries)


@on_standby
def test_an_event_view_the_replica_fails_is_answered_and_recorded_once(
    admin_client, admin_user, api, broken_standby
):
    seed(api)
    event = ActionLog.objects.exclude(source__name=INTERNAL_SOURCE_NAME).latest("id")

    detail = admin_client.get(f"{LIST_URL}{event.pk}/change/")

    assert detail.status_code == 200 and str(event.uuid) in detail.content.decode()
    views = ActionLog.objects.filter(action="auditlog.event.view", target_id=str(event.uuid))
    assert views.count() == 1


@on_standby
def test_an_export_whose_replica_fails_is_whole_from_the_primary(admin_client, api, broken_standby):
    seed(api)

    export = admin_client.get(f"{LIST_URL}export/csv/")
    rows = b"".join(export.streaming_content).decode().splitlines()

    assert export.status_code == 200
    assert len(rows) == 1 + ActionLog.objects.count()


@on_standby
def test_the_admin_list_says_where_reads_go(admin_client, standby, settings):
    settings.DATABASE_REPLICA_MAX_LAG_SECONDS = 10
    page = admin_client.get(LIST_URL).content.decode()
    assert "Reads from the replica, 0.0 s behind the primary (bound 10 s)" in page

    replica.replica_health.mark_down("connection refused")
    page = admin_client.get(LIST_URL).content.decode()
    assert "Replica unusable (connection refused): reads from the primary" in page


def test_without_a_replica_the_admin_list_says_nothing_about_one(admin_client):
    assert 'id="replica-status"' not in admin_client.get(LIST_URL).content.decode()
