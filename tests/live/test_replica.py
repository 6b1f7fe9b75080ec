"""A real streaming replica (tests/live/replica.py) behind a real gunicorn with
DATABASE_REPLICA_URL (docs/replicas.md).

Under a concurrent read load (the API's list and detail, the admin's list, detail and CSV
export), the replica serves the events' reads with no error, while writes, replays and their
idempotency look-ups go to the primary and are stored exactly once. A replica whose replay is
paused past the lag bound leaves the reads to the primary, which answers with the fresh event;
a replica stopped mid-load does too, and no request fails.
"""

import csv
import io
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from auditlog.models import ActionLog
from tests.conftest import BATCH_URL, EVENTS_URL, make_event
from tests.live import load
from tests.live.conftest import LOG_DIR, ROOT, database_url
from tests.live.replica import StreamingReplica, missing_tools, not_root, primary_connect
from tests.live.test_pgbouncer import PASSWORD, admin_login

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MAX_LAG = 2.0  # DATABASE_REPLICA_MAX_LAG_SECONDS for the test: a pause is over it within seconds
CHECK = 0.5  # DATABASE_REPLICA_CHECK_SECONDS
SEEDED = 300
READERS = 8
LIST = "/admin/auditlog/actionlog/"
SCANS = (
    "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables "
    "WHERE relname LIKE 'auditlog_actionlog%%'"
)


@pytest.fixture
def replica(request):
    if connection.vendor != "postgresql":
        pytest.skip("a streaming replica is PostgreSQL's")
    if not_root():
        pytest.skip("needs root: pg_basebackup and pg_ctl run as the postgres OS user (runuser)")
    absent = missing_tools()
    if absent:
        message = f"needs {', '.join(absent)} (Debian's postgresql and util-linux)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    made = StreamingReplica(request.node.name)
    try:
        yield made.start()
    finally:
        made.remove()


def replica_url(replica: StreamingReplica) -> str:
    """The service's own URL (its runtime role) with the replica's port: a physical replica has
    the primary's roles and grants."""
    parts = urlsplit(database_url())
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{replica.port}"))


def scans(conn) -> int:
    """Table and index scans of the events on that server (its statistics, per database)."""
    return int(conn.execute(SCANS).fetchone()[0])


class Readers:
    """READERS threads, each logged in to the admin and holding a read key, reading in turn the
    API's list and detail and the admin's list, detail and CSV export until the deadline or
    `limit` requests in all. Every answer is checked whole; anything else is an error."""

    OPS = ("api-list", "api-detail", "admin-list", "admin-detail", "admin-csv")

    def __init__(self, server, token: str, events: list[tuple[int, str]], *, seconds: float, limit: int):
        self.server, self.token, self.events = server, token, events
        self.seconds, self.limit = seconds, limit
        self.results: list[tuple[float, str, int | None, str]] = []  # (time, op, status, error)
        self.lock = threading.Lock()
        self.seconds_taken: dict[str, list[float]] = {}

    def run(self) -> "Readers":
        self.deadline = time.monotonic() + self.seconds
        threads = [threading.Thread(target=self._reader, args=(n,)) for n in range(READERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self

    def _reader(self, number: int) -> None:
        browser = admin_login(self.server.port)
        op = number
        while time.monotonic() < self.deadline:
            with self.lock:
                if len(self.results) >= self.limit:
                    return
            name = self.OPS[op % len(self.OPS)]
            pk, uuid = self.events[op % len(self.events)]
            started = time.monotonic()
            try:
                status, error = getattr(self, name.replace("-", "_"))(browser, pk, uuid)
            except Exception as exc:  # a broken connection or a truncated body
                status, error = None, repr(exc)
            with self.lock:
                self.results.append((time.monotonic(), name, status, error))
                self.seconds_taken.setdefault(name, []).append(time.monotonic() - started)
            op += 1

    def api_list(self, browser, pk, uuid):
        status, _, body = self.server.request("GET", f"{EVENTS_URL}?limit=50", headers=self._auth())
        return status, "" if status == 200 and len(body["results"]) == 50 else f"list: {str(body)[:200]}"

    def api_detail(self, browser, pk, uuid):
        status, _, body = self.server.request("GET", f"{EVENTS_URL}/{uuid}", headers=self._auth())
        return status, "" if status == 200 and body["id"] == uuid else f"detail: {str(body)[:200]}"

    def admin_list(self, browser, pk, uuid):
        status, _, page = browser.request("GET", f"{LIST}?outcome__exact=success")
        return status, "" if status == 200 and 'id="result_list"' in page else "admin list without results"

    def admin_detail(self, browser, pk, uuid):
        status, _, page = browser.request("GET", f"{LIST}{pk}/change/")
        return status, "" if status == 200 and uuid in page else "admin detail without the event"

    def admin_csv(self, browser, pk, uuid):
        status, _, text = browser.request("GET", f"{LIST}export/csv/")
        rows = list(csv.DictReader(io.StringIO(text))) if status == 200 else []
        return status, "" if len(rows) >= SEEDED else f"CSV of {len(rows)} rows"

    def _auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    def statuses(self, since: float = 0.0) -> Counter:
        return Counter((op, status) for at, op, status, _ in self.results if at >= since)

    def median_ms(self) -> dict[str, int]:
        return {name: round(statistics.median(taken) * 1000) for name, taken in self.seconds_taken.items()}

    def errors(self) -> list:
        return [(op, status, error) for _, op, status, error in self.results if status != 200 or error]


def dbcheck(env: dict) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "auditlog_dbcheck"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return done.stdout + done.stderr


def replica_status(browser) -> str:
    _, _, page = browser.request("GET", LIST)
    found = re.search(r'id="replica-status"[^>]*>([^<]*)<', page)
    return found.group(1).lower() if found else ""


def wait_for_status(browser, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in (status := replica_status(browser)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


def test_reads_go_to_a_streaming_replica_and_to_the_primary_when_it_lags_or_stops(
    gunicorn_factory, writer_key, replica
):
    get_user_model().objects.create_superuser("auditor", "auditor@example.com", PASSWORD)
    source, token = writer_key
    env = {
        "DATABASE_REPLICA_URL": replica_url(replica),
        "DATABASE_REPLICA_MAX_LAG_SECONDS": str(MAX_LAG),
        "DATABASE_REPLICA_CHECK_SECONDS": str(CHECK),
    }
    server = gunicorn_factory(**env)
    auth = {"Authorization": f"Bearer {token}"}
    for batch in range(SEEDED // 100):
        events = [make_event(idempotency_key=f"seed-{batch}-{n}") for n in range(100)]
        assert server.request("POST", BATCH_URL, {"events": events}, headers=auth)[0] == 200
    events = [
        (pk, str(uuid)) for pk, uuid in ActionLog.objects.filter(source=source).values_list("id", "uuid")
    ]
    replica.wait_caught_up()
    browser = admin_login(server.port)
    summary = {}
    name = connection.settings_dict["NAME"]
    with primary_connect(name) as primary, replica.connect(name) as replica_db:
        summary["replica serves"] = _replica_serves(server, browser, token, events, primary, replica_db)
        summary["replay paused"] = _replay_paused(server, browser, auth, replica, replica_db)
    summary["replica stopped"] = _replica_stopped(server, browser, token, events, replica)
    (LOG_DIR / "replica.summary.json").write_text(json.dumps(summary, indent=2))
    assert "Traceback" not in server.log()


def _replica_serves(server, browser, token, events, primary, replica_db) -> dict:
    """The replica serves the reads; writes and replays, at the same time, go to the primary."""
    assert "reads from the replica" in wait_for_status(browser, "reads from the replica")
    before = scans(primary), scans(replica_db)
    plan = load.Plan(clients=4, ops=20)
    writes = []
    writing = threading.Thread(target=lambda: writes.extend(load.run(plan, server.port, token)))
    writing.start()
    readers = Readers(server, token, events, seconds=6, limit=1500).run()
    writing.join()
    backends = replica_db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
        ["auditlog"],
    ).fetchone()[0]
    time.sleep(1.5)  # a backend publishes its statistics at most once a second
    after = scans(primary), scans(replica_db)
    served = {"primary": after[0] - before[0], "replica": after[1] - before[1]}
    assert readers.errors() == []
    assert len(readers.results) >= 100, readers.statuses()
    assert backends >= 1
    # Every read request scans the events at least once (an admin list with its activity chart,
    # about fifty times): on the replica, (nearly) never on the primary, where a moment's lag
    # over the bound sends a request or two.
    assert served["replica"] >= len(readers.results), served
    assert served["primary"] <= served["replica"] // 20, served
    assert load.status_counts(writes).keys() <= {"200", "201"}, load.status_counts(writes)
    stored = ActionLog.objects.filter(idempotency_key__in=plan.sent_keys).values_list(
        "idempotency_key", "uuid"
    )
    assert {key: str(value) for key, value in stored} == load.acked(writes)  # each stored once, as acked
    check = dbcheck(server.env)
    assert "reads from the replica" in check, check
    return {
        "requests": {f"{op} {status}": n for (op, status), n in readers.statuses().items()},
        "median ms": readers.median_ms(),
        "events table scans": served,
        "service connections on the replica": backends,
        "writes at the same time": load.status_counts(writes),
        "auditlog_dbcheck": [line for line in check.splitlines() if line.startswith("read replica")],
    }


def _replay_paused(server, browser, auth, replica, replica_db) -> dict:
    """Replay paused: the replica falls behind the bound, and the primary answers, fresh."""
    replica_db.execute("SELECT pg_wal_replay_pause()")
    status, _, body = server.request(
        "POST", EVENTS_URL, make_event(idempotency_key="after-pause", actor={"id": "fresh"}), headers=auth
    )
    assert status == 201
    fresh = body["id"]
    missing = replica_db.execute("SELECT count(*) FROM auditlog_actionlog WHERE uuid = %s::uuid", [fresh])
    assert missing.fetchone() == (0,)  # a read the replica served would not find it
    lagging = wait_for_status(browser, "over the", timeout=MAX_LAG + 5)
    assert "reads from the primary" in lagging, lagging
    status, _, body = server.request("GET", f"{EVENTS_URL}/{fresh}", headers=auth)
    assert (status, body["id"]) == (200, fresh)
    status, _, body = server.request("GET", f"{EVENTS_URL}?actor_id=fresh", headers=auth)
    assert [event["id"] for event in body["results"]] == [fresh]
    replica_db.execute("SELECT pg_wal_replay_resume()")
    replica.wait_caught_up()
    back = wait_for_status(browser, "reads from the replica")
    assert "reads from the replica" in back, back
    return {"admin said": lagging, "fresh event read from the primary": fresh, "then": back}


def _replica_stopped(server, browser, token, events, replica) -> dict:
    """The replica stops mid-load: every read still answers 200, from the primary."""
    stopped_at = []
    stopper = threading.Timer(2.0, lambda: (stopped_at.append(time.monotonic()), replica.stop("fast")))
    stopper.start()
    readers = Readers(server, token, events, seconds=6, limit=1500).run()
    stopper.join()
    after_stop = readers.statuses(since=stopped_at[0])
    down = replica_status(browser)
    check = dbcheck(server.env)
    assert readers.errors() == []
    assert sum(after_stop.values()) >= 50, after_stop
    assert "replica unusable" in down and "reads from the primary" in down, down
    assert "auditlog.W010" in check, check
    return {
        "requests": {f"{op} {status}": n for (op, status), n in readers.statuses().items()},
        "median ms": readers.median_ms(),
        "requests after the stop": sum(after_stop.values()),
        "admin says": down,
    }
