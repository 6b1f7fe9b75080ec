import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from auditlog.ingest.demo import ACTIONS, DEMO_KEY_NAME
from auditlog.models import ActionLog

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_demo_data_is_realistic():
    run("auditlog_demo", "--count", "20000", "--seed", "7")

    events = list(
        ActionLog.objects.values("actor_id", "action", "outcome", "ip_address", "occurred_at", "metadata")
    )
    assert len(events) == 20000
    assert ActionLog.objects.filter(source__name=DEMO_KEY_NAME).count() == 20000
    actors = Counter(e["actor_id"] for e in events)
    assert len(actors) > 1000  # thousands of actors…
    assert actors.most_common(1)[0][1] > 20 * len(events) / len(actors)  # …with a skew
    assert len({e["action"] for e in events}) >= len(ACTIONS) - 2
    failures = sum(e["outcome"] == "failure" for e in events) / len(events)
    assert 0.005 < failures < 0.1
    assert any(":" in e["ip_address"] for e in events) and any("." in e["ip_address"] for e in events)
    times = sorted(e["occurred_at"] for e in events)
    assert timedelta(days=89) < times[-1] - times[0] <= timedelta(days=90, seconds=5)
    assert all("request_id" in e["metadata"] for e in events)


def test_demo_rejects_a_non_positive_count():
    with pytest.raises(CommandError, match="at least 1"):
        run("auditlog_demo", "--count", "0")


def test_export_command_streams_filtered_csv():
    run("auditlog_demo", "--count", "3000", "--seed", "1")

    rows = list(
        csv.DictReader(io.StringIO(run("auditlog_export", "--action", "user.login", "--outcome", "success")))
    )

    expected = ActionLog.objects.filter(action="user.login", outcome="success").order_by(
        "-occurred_at", "-id"
    )
    assert [row["id"] for row in rows] == [str(u) for u in expected.values_list("uuid", flat=True)]
    assert len(rows) > 100


def test_export_command_writes_jsonl_to_a_file(tmp_path):
    run("auditlog_demo", "--count", "500", "--seed", "2")
    path = tmp_path / "out.jsonl"

    run("auditlog_export", "--format", "jsonl", "--action", "user.*", "--output", str(path))

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == ActionLog.objects.filter(action__startswith="user.").count()
    assert all(line["action"].startswith("user.") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--outcome", "maybe"], "--outcome: Must be one of"),
        (["--since", "yesterday"], "--since: Must be an RFC 3339 date-time"),
    ],
)
def test_export_command_refuses_bad_filters(args, message):
    with pytest.raises(CommandError, match=message):
        run("auditlog_export", *args)


@pytest.mark.django_db(transaction=True)
def test_export_of_many_events_keeps_memory_flat(tmp_path):
    """Peak resident memory of a process exporting 60,000 events vs 6,000: the same."""
    run("auditlog_demo", "--count", "60000", "--seed", "3")
    settings = connection.settings_dict
    url = (
        f"sqlite:///{settings['NAME']}"
        if connection.vendor == "sqlite"
        else f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    )

    def peak_kib(since):
        command = ["manage.py", "auditlog_export", "--since", since, "-o", f"{tmp_path}/x.csv"]
        # VmHWM, not ru_maxrss: the latter survives fork and exec, so it would report pytest's peak.
        script = (
            "import re, sys; from django.core.management import execute_from_command_line; "
            f"execute_from_command_line({command!r}); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1], file=sys.stderr)"
        )
        env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": url}
        env |= {"DJANGO_ENV_FILE": "/nonexistent", "DJANGO_SECRET_KEY": "k" * 60}
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        return int(result.stderr.strip().splitlines()[-1])

    newest = ActionLog.objects.order_by("-occurred_at").values_list("occurred_at", flat=True)
    small = peak_kib(newest[5999].isoformat())
    large = peak_kib(newest[59999].isoformat())

    print(f"peak RSS: {small} KiB for 6,000 events, {large} KiB for 60,000")
    assert large < small * 1.15 + 4096, (small, large)
