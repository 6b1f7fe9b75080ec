"""Retention under load: a purge of 200,000 old events while producers ingest at full speed; on
PostgreSQL whole months go as partitions. The events are sealed first, and the trail verifies
after."""

import functools
import io
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection

from auditlog.models import ActionLog
from auditlog.trail.note import Signer
from tests.live import load
from tests.live.conftest import ROOT, server_env
from tests.live.test_concurrency import stored, write_summary

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_purging_200000_events_during_full_speed_ingest_loses_no_request(gunicorn, writer_key):
    key, token = writer_key
    call_command("auditlog_demo", "--count", "200000", "--seed", "9", stdout=io.StringIO())
    trail = server_env(
        AUDITLOG_TRAIL_KEY=Signer.generate("purge.example/log").text(), AUDITLOG_SEAL_DELAY_SECONDS="0"
    )
    manage = functools.partial(
        subprocess.run, cwd=ROOT, env=trail, capture_output=True, text=True, timeout=300
    )
    sealed = manage([sys.executable, "manage.py", "auditlog_seal"])
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    plan = load.Plan(clients=32, ops=100_000, stop=threading.Event())
    runner = threading.Thread(target=lambda: setattr(plan, "results", load.run(plan, gunicorn.port, token)))
    runner.start()
    time.sleep(1.0)

    started = time.monotonic()
    purge = manage([sys.executable, "manage.py", "auditlog_purge", "--older-than", "1"])
    purge_seconds = time.monotonic() - started
    time.sleep(1.0)
    plan.stop.set()
    runner.join(120)

    results = plan.results
    acked = load.acked(results)
    write_summary(
        "purge-under-load",
        {
            "purge_seconds": round(purge_seconds, 1),
            "purge_output": purge.stdout.strip().splitlines(),
            "ingest_requests": len(results),
            "ingest_statuses": load.status_counts(results),
            "events_acked": len(acked),
        },
    )
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert "Deleted" in purge.stdout
    if connection.vendor == "postgresql":  # whole months of the demo's 90 days went as partitions
        assert "dropped whole" in purge.stdout, purge.stdout
    assert (
        ActionLog.objects.filter(source__name="demo-data").count() < 200_000 * 2 / 90 + 100
    )  # a day's worth
    assert {r.status for r in results} <= {200, 201}, load.status_counts(results)
    assert len(results) > 1000
    assert acked.items() <= stored(key).items()
    assert "database is locked" not in gunicorn.log()
    sealed = manage([sys.executable, "manage.py", "auditlog_seal"])  # what the producers added
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    verified = manage([sys.executable, "manage.py", "auditlog_verify"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
