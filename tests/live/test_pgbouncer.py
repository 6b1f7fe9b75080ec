"""PgBouncer in transaction mode between gunicorn and PostgreSQL, as docs/pgbouncer.md sets it
up (DATABASE_POOLER=pgbouncer-transaction): single events, batches (COPY), replays, reads, the
admin and its export all work through it under load, with no error, every event stored once,
and the server-side bounds set by PgBouncer's connect_query instead of a startup parameter."""

import csv
import http.client
import io
import json
import re
import threading
import urllib.parse
from collections import Counter

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from auditlog.models import ActionLog
from tests.conftest import two_roles
from tests.live import load
from tests.live.conftest import LOG_DIR, database_url
from tests.live.pgbouncer import PgBouncer, available

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PASSWORD = "pgbouncer-auditor-1"


@pytest.fixture
def pgbouncer(request):
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer stands in front of PostgreSQL")
    if not available():
        pytest.fail("needs Debian's pgbouncer (.ci/run installs it)")
    users = [connection.settings_dict["USER"], *filter(None, [two_roles()])]
    bouncer = PgBouncer(request.node.name, users).start()
    yield bouncer
    bouncer.stop()


class Browser:
    """Just enough of a browser for the admin: cookies and the CSRF token."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers |= {
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"http://127.0.0.1:{self.port}{path}",
            }
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";")[0]
        conn.close()
        return response.status, dict(response.getheaders()), text


def admin_login(port: int) -> Browser:
    browser = Browser(port)
    _, _, page = browser.request("GET", "/admin/login/?next=/admin/auditlog/actionlog/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"username": "auditor", "password": PASSWORD, "csrfmiddlewaretoken": csrf}
    status, _, _ = browser.request("POST", "/admin/login/?next=/admin/auditlog/actionlog/", form)
    assert status == 302 and "sessionid" in browser.cookies, status
    return browser


def export_path(page: str) -> str:
    found = re.search(r'id="export-csv"[^>]*href="([^"]+)"|href="([^"]+)"[^>]*id="export-csv"', page)
    return (found.group(1) or found.group(2)).replace("&amp;", "&")


def test_ingest_reads_and_the_admin_work_through_pgbouncer_in_transaction_mode(
    gunicorn_factory, writer_key, pgbouncer
):
    get_user_model().objects.create_superuser("auditor", "auditor@example.com", PASSWORD)
    source, token = writer_key
    server = gunicorn_factory(
        DATABASE_URL=pgbouncer.url(database_url()), DATABASE_POOLER="pgbouncer-transaction"
    )
    browser = admin_login(server.port)
    plan = load.Plan(clients=32, ops=40)
    loading = threading.Thread(target=lambda: results.extend(load.run(plan, server.port, token)))
    results, admin = [], Counter()

    loading.start()
    while loading.is_alive():  # the auditor's pages while producers send at full speed
        status, _, page = browser.request("GET", "/admin/auditlog/actionlog/?outcome__exact=success")
        admin[status] += 1
        if status == 200 and 'id="result_list"' in page:
            admin["csv", browser.request("GET", export_path(page))[0]] += 1
            detail = re.search(r'href="(/admin/auditlog/actionlog/\d+/change/[^"]*)"', page)
            if detail:
                admin["detail", browser.request("GET", detail.group(1).replace("&amp;", "&"))[0]] += 1
    loading.join()

    assert load.status_counts(results).keys() <= {"200", "201"}, load.status_counts(results)
    acked = load.acked(results)
    assert acked.keys() == plan.sent_keys
    stored = dict(ActionLog.objects.filter(source=source).values_list("idempotency_key", "uuid"))
    assert {key: str(value) for key, value in stored.items()} == acked  # each once, as acknowledged
    summary = {"ingest": load.status_counts(results), "admin": {str(k): v for k, v in admin.items()}}
    (LOG_DIR / "pgbouncer.summary.json").write_text(json.dumps(summary, indent=2))
    assert admin[200] >= 1 and set(admin) == {200, ("csv", 200), ("detail", 200)}, admin
    status, _, page = browser.request("GET", "/admin/auditlog/actionlog/")
    status, _, csv_text = browser.request("GET", export_path(page))
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    produced = {row["idempotency_key"] for row in rows if row["source"].startswith("producer (")}
    assert produced == plan.sent_keys
    assert {row["action"] for row in rows if not row["source"].startswith("producer (")} <= {
        "auditlog.admin.login",
        "auditlog.events.export",
        "auditlog.event.view",
        "auditlog.user.create",  # the auditor's account, made for the test (a change of access)
    }

    # The bounds a startup parameter would have set, set by connect_query on PgBouncer's side.
    with psycopg.connect(pgbouncer.url(database_url())) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "3s"
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "2s"
    assert "Traceback" not in server.log()
    assert "ERROR" not in pgbouncer.log(), pgbouncer.log()[-3000:]
