"""Monitoring: /metrics for a metrics key, counted by route, status, source and cause; a request
id in every answer, error body and log line; sources gone silent."""

import io
import json
import logging
import os
import re
import runpy
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from auditlog.ingest.services import event_record_internal
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, ApiKey, Scope
from auditlog.monitoring.metrics import unavailable_cause
from auditlog.monitoring.silence import silence_check
from tests.conftest import BATCH_URL, EVENTS_URL, ApiClient, make_event

pytestmark = pytest.mark.django_db

METRICS_URL = "/metrics"


@pytest.fixture
def scraper(client, db):
    return ApiClient(client, api_key_create(name="prometheus", scopes={Scope.METRICS})[1])


def scrape(scraper) -> dict[str, float]:
    """The exposition as {sample with its labels: value}."""
    response = scraper.get(METRICS_URL)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def sample(samples: dict, name: str, **labels) -> float:
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    found = [
        value for key, value in samples.items() if key.split("{")[0] == name and all(w in key for w in wanted)
    ]
    return sum(found)


def test_metrics_need_a_metrics_key(client, api, scraper):
    assert client.get(METRICS_URL).status_code == 401
    assert api.get(METRICS_URL).status_code == 403  # a write and read key is not a scraper
    assert scraper.get(METRICS_URL).status_code == 200


def test_requests_events_and_their_results_are_counted(api, scraper, writer_key):
    source = writer_key[0].name
    before = scrape(scraper)
    assert api.post(EVENTS_URL, make_event(idempotency_key="k1")).status_code == 201
    assert api.post(EVENTS_URL, make_event(idempotency_key="k1")).status_code == 200  # replay
    assert api.post(EVENTS_URL, make_event(idempotency_key="k1", action="other")).status_code == 409
    assert api.post(EVENTS_URL, make_event(action="Not Valid")).status_code == 400
    batch = [make_event(idempotency_key="b1"), make_event(idempotency_key="k1"), {"action": "x"}]
    assert api.post(BATCH_URL, {"events": batch}).status_code == 200
    after = scrape(scraper)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    route = "api/v1/events"
    assert delta("auditlog_http_requests_total", route=route, method="POST", status="201") == 1
    assert delta("auditlog_http_requests_total", route=route, method="POST", status="200") == 1
    assert delta("auditlog_http_requests_total", route=route, method="POST", status="409") == 1
    assert delta("auditlog_http_requests_total", route=route, method="POST", status="400") == 1
    assert delta("auditlog_http_request_duration_seconds_count", route=route, method="POST") == 4
    assert delta("auditlog_events_total", source=source, result="accepted") == 2
    assert delta("auditlog_events_total", source=source, result="replayed") == 2
    assert delta("auditlog_events_total", source=source, result="conflict") == 1
    assert delta("auditlog_events_total", source=source, result="rejected") == 2
    assert "auditlog_seal_lag_seconds" in after and sample(after, "auditlog_seal_lag_seconds") >= 0


def test_every_answer_has_a_request_id_and_an_error_body_names_it(api, writer_key, caplog):
    with caplog.at_level(logging.INFO, logger="auditlog.request"):
        response = api.post(EVENTS_URL, make_event(action="Not Valid"))

    request_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert response.json()["error"]["request_id"] == request_id
    [line] = [record for record in caplog.records if record.name == "auditlog.request"]
    assert (line.request_id if hasattr(line, "request_id") else None) in (None, request_id)
    assert (line.route, line.method, line.status, line.events) == ("api/v1/events", "POST", 400, 1)
    assert line.key == api_key_prefix(api)


def api_key_prefix(api) -> str:
    return (
        api.token.split("_")[1] if api.token.count("_") >= 2 else ApiKey.objects.get(name="producer").prefix
    )


def test_the_log_line_is_json_without_the_token_or_the_body(api, capfd):
    from auditlog.monitoring.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("auditlog.request")
    logger.addHandler(handler)
    try:
        response = api.post(EVENTS_URL, make_event(metadata={"secret": "body-text-here"}))
    finally:
        logger.removeHandler(handler)
    [line] = [line for line in capfd.readouterr().err.splitlines() if '"auditlog.request"' in line]
    record = json.loads(line)
    assert {
        "time",
        "level",
        "request_id",
        "route",
        "method",
        "status",
        "duration_ms",
        "key",
        "events",
    } <= set(record)
    assert record["status"] == 201 and record["events"] == 1
    assert record["request_id"] == response["X-Request-ID"]
    assert api.token not in line and "body-text-here" not in line


def test_a_request_id_is_taken_only_from_a_trusted_proxy(api, settings):
    settings.AUDITLOG_TRUSTED_PROXIES = 0
    assert (
        api.client.get("/healthz", HTTP_X_REQUEST_ID="chosen-by-client")["X-Request-ID"] != "chosen-by-client"
    )
    settings.AUDITLOG_TRUSTED_PROXIES = 1
    assert (
        api.client.get("/healthz", HTTP_X_REQUEST_ID="from-the-proxy-1")["X-Request-ID"] == "from-the-proxy-1"
    )
    assert api.client.get("/healthz", HTTP_X_REQUEST_ID="with space")["X-Request-ID"] != "with space"


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("couldn't get a connection after 2.00 sec", "pool_exhausted"),
        ("database is locked (writer queue)", "writer_queue"),
        ("database is locked", "writer_queue"),
        ("canceling statement due to statement timeout", "database_timeout"),
        ("the database is unreachable; another request of this process is trying it", "outage_suspected"),
        ("connection refused", "database_unavailable"),
    ],
)
def test_a_503_is_counted_by_its_cause(message, cause):
    assert unavailable_cause(OperationalError(message)) == cause


def test_the_last_purge_is_the_services_own_not_a_producers(api, scraper):
    assert "auditlog_last_purge_timestamp_seconds" not in scrape(scraper)
    assert api.post(EVENTS_URL, make_event(action="auditlog.purge")).status_code == 201
    assert "auditlog_last_purge_timestamp_seconds" not in scrape(scraper)
    purge = event_record_internal(action="auditlog.purge", actor_id="command line (ops)", actor_type="system")
    assert scrape(scraper)["auditlog_last_purge_timestamp_seconds"] == purge.occurred_at.timestamp()


def test_a_silent_source_is_reported_then_its_return(scraper, django_capture_on_commit_callbacks, client):
    key, token = api_key_create(name="billing", scopes={Scope.WRITE})
    ApiKey.objects.filter(pk=key.pk).update(
        expected_interval_seconds=60, created_at=timezone.now() - timedelta(minutes=5)
    )

    [silent] = silence_check()
    assert (silent.action, silent.target_id, silent.outcome) == (
        "auditlog.source.silent",
        key.prefix,
        "failure",
    )
    assert silent.metadata["source"] == "billing" and silent.metadata["expected_interval_seconds"] == 60
    assert silence_check() == []  # said once
    samples = scrape(scraper)
    assert sample(samples, "auditlog_source_silent", source="billing") == 1
    assert sample(samples, "auditlog_source_last_event_age_seconds", source="billing") >= 300

    assert (
        ApiClient(client, token)
        .post(EVENTS_URL, make_event(occurred_at=timezone.now().isoformat()))
        .status_code
        == 201
    )
    [resumed] = silence_check()
    assert resumed.action == "auditlog.source.resumed" and resumed.outcome == "success"
    assert sample(scrape(scraper), "auditlog_source_silent", source="billing") == 0
    assert ActionLog.objects.filter(action__startswith="auditlog.source.").count() == 2


def test_the_admin_index_says_a_source_is_silent(admin_client):
    key, _ = api_key_create(name="billing", scopes={Scope.WRITE})
    ApiKey.objects.filter(pk=key.pk).update(
        expected_interval_seconds=3600, created_at=timezone.now() - timedelta(days=1)
    )
    silence_check()

    page = admin_client.get("/admin/").content.decode()
    assert "SILENT since" in page and "expects an event every 1 hour" in page


def test_a_keys_expected_interval_is_set_in_the_admin_and_the_change_recorded(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    key, _ = api_key_create(name="billing", scopes={Scope.WRITE})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/auditlog/apikey/{key.pk}/change/", {"expected_interval_seconds": "600"}
        )

    assert response.status_code == 302, response.content[:500]
    assert ApiKey.objects.get(pk=key.pk).expected_interval_seconds == 600
    [event] = ActionLog.objects.filter(action="auditlog.apikey.change")
    assert (event.actor_id, event.target_id) == (admin_user.username, key.prefix)
    assert event.metadata == {"changes": {"expected_interval_seconds": [None, 600]}}


@pytest.mark.usefixtures("maintenance_role")
def test_the_seal_worker_reports_a_source_silent_within_its_bound(settings, client):
    """A producer sends, then stops: past its bound, the worker's next round records it."""
    from django.core.management import call_command

    from auditlog.trail.note import Signer

    settings.AUDITLOG_TRAIL_KEY = Signer.generate("audit.example.com/log").text()
    settings.AUDITLOG_SEAL_INTERVAL_SECONDS = 0
    key, token = api_key_create(name="payroll", scopes={Scope.WRITE})
    ApiKey.objects.filter(pk=key.pk).update(expected_interval_seconds=3)
    assert (
        ApiClient(client, token)
        .post(EVENTS_URL, make_event(occurred_at=timezone.now().isoformat()))
        .status_code
        == 201
    )
    call_command("auditlog_seal", "--follow", "--rounds", "1", stdout=io.StringIO())
    assert not ActionLog.objects.filter(action="auditlog.source.silent").exists()  # within its bound

    time.sleep(3.2)
    out = io.StringIO()
    call_command("auditlog_seal", "--follow", "--rounds", "1", stdout=out)

    [silent] = ActionLog.objects.filter(action="auditlog.source.silent")
    assert silent.target_id == key.prefix and "auditlog.source.silent payroll" in out.getvalue()


def test_a_key_made_on_the_command_line_can_say_its_cadence():
    from django.core.management import call_command

    call_command("auditlog_create_key", "--name", "cron-jobs", "--expect-every", "7200", stdout=io.StringIO())
    call_command("auditlog_create_key", "--name", "prometheus", "--scopes", "metrics", stdout=io.StringIO())

    assert ApiKey.objects.get(name="cron-jobs").expected_interval_seconds == 7200
    assert ApiKey.objects.get(name="prometheus").scope_set == {"metrics"}


def test_sqlite_writes_count_their_wait_for_the_writer_queue(api, scraper):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the writer queue is SQLite's")
    before = sample(scrape(scraper), "auditlog_sqlite_writer_queue_wait_seconds_count")
    assert api.post(EVENTS_URL, make_event(idempotency_key="w1")).status_code == 201
    after = scrape(scraper)

    assert sample(after, "auditlog_sqlite_writer_queue_wait_seconds_count") > before


def test_gunicorn_names_its_metrics_directory_and_removes_those_of_servers_killed_before(tmp_path):
    conf = runpy.run_path(str(Path(settings.BASE_DIR) / "config" / "gunicorn.conf.py"))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"auditlog-metrics-{int(gone.stdout)}-k7x1"  # its master died with SIGKILL
    live = tmp_path / f"auditlog-metrics-{os.getpid()}-q2w3"
    unrelated = tmp_path / "auditlog-metrics-notapid"
    for directory in (stale, live, unrelated):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")

    conf["_remove_dead_servers_metrics_dirs"](str(tmp_path))
    assert (stale.exists(), live.exists(), unrelated.exists()) == (False, True, True)

    given = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        conf["on_starting"](None)
        made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert made.is_dir() and made.name.startswith(f"auditlog-metrics-{os.getpid()}-")
        conf["on_exit"](None)
        assert not made.exists()
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if given is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = given
