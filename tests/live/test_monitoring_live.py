"""Monitoring against a real multi-worker gunicorn: /metrics counts exactly the requests made,
whichever worker served them and whichever answers the scrape; Debian's Prometheus scrapes it
with a metrics key and reads the same counts back; the shipped alert rules pass promtool."""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from auditlog.keys.services import api_key_create
from auditlog.models import Scope
from tests.conftest import EVENTS_URL, make_event
from tests.live.conftest import LOG_DIR, ROOT, free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"
ROUTE = "api/v1/events"


def needs(binary: str):
    if not shutil.which(binary):
        message = f"needs Debian's prometheus package ({binary}): apt-get install prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def scrape(server, token: str) -> dict[str, float]:
    status, headers, body = server.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def requests_counted(samples: dict, status: str) -> float:
    prefix = "auditlog_http_requests_total{"
    return sum(
        value
        for name, value in samples.items()
        if name.startswith(prefix) and f'route="{ROUTE}"' in name and f'status="{status}"' in name
    )


def test_metrics_count_every_workers_requests_and_prometheus_reads_them(gunicorn_factory, tmp_path):
    server = gunicorn_factory(WEB_CONCURRENCY="2", GUNICORN_THREADS="4")
    _, writer = api_key_create(name="billing", scopes={Scope.WRITE})
    _, scraper = api_key_create(name="prometheus", scopes={Scope.METRICS})
    auth = {"Authorization": f"Bearer {writer}"}
    post = lambda n: server.request("POST", EVENTS_URL, make_event(idempotency_key=f"m{n}"), auth)[0]  # noqa: E731
    created = 0
    # Eight at a time, each on a new connection, in rounds of 40 until both workers have served
    # some: sent one after the other, 47 once all went to the worker that had just answered.
    with ThreadPoolExecutor(8) as pool:
        while created < 400 and len(served_by(server)) < 2:
            assert list(pool.map(post, range(created, created + 40))) == [201] * 40
            created += 40
    for _ in range(7):
        assert server.request("POST", EVENTS_URL, make_event(action="Not Valid"), auth)[0] == 400
    workers = served_by(server)
    assert len(workers) == 2, f"one worker served all {created + 7} ({workers}): the test would prove nothing"
    for _ in range(4):  # whichever worker answers the scrape, the counts are the same
        samples = scrape(server, scraper)
        assert (requests_counted(samples, "201"), requests_counted(samples, "400")) == (created, 7)

    needs(PROMETHEUS)
    token_file = tmp_path / "token"
    token_file.write_text(scraper)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: auditlog\n"
        "    authorization: {type: Bearer, credentials_file: " + str(token_file) + "}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    log = open(LOG_DIR / "prometheus.log", "w")  # noqa: SIM115 (closed below)
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        total = lambda: query(port, f'sum(auditlog_http_requests_total{{route="{ROUTE}",status="201"}})')  # noqa: E731
        up = lambda: query(port, 'up{job="auditlog"}')  # noqa: E731
        deadline = time.monotonic() + 60
        while not (up() == 1 and total() == created):
            assert prometheus.poll() is None, (LOG_DIR / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"Prometheus read up={up()}, 201s={total()}"
            time.sleep(0.5)
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        log.close()


def served_by(server) -> set[int]:
    """The worker pids the request log shows serving the events route."""
    return {
        json.loads(line)["process"]
        for line in server.log().splitlines()
        if line.startswith("{") and '"auditlog.request"' in line and f'"route": "{ROUTE}"' in line
    }


def query(port: int, expression: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result = json.load(response)["data"]["result"]
    except OSError:
        return None
    return float(result[0]["value"][1]) if result else None


def test_the_shipped_alert_rules_pass_promtool():
    assert "SUCCESS: 11 rules found" in promtool("check", "rules", str(ROOT / "deploy/prometheus/alerts.yml"))


def test_every_alert_has_a_runbook_line():
    rules = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    runbook = (ROOT / "docs/monitoring.md").read_text().lower()
    for anchor in (line.split("#")[1].strip('"') for line in rules.splitlines() if "runbook:" in line):
        assert f"### {anchor}" in runbook, anchor


def test_the_shipped_scrape_configuration_passes_promtool(tmp_path):
    """The configuration as shipped, with its credentials file made (promtool checks it exists)."""
    shipped = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    token = tmp_path / "auditlog-metrics.token"
    token.write_text("a-metrics-key\n")
    (tmp_path / "prometheus.yml").write_text(
        shipped.replace("/etc/prometheus/auditlog-metrics.token", str(token))
    )
    (tmp_path / "alerts.yml").write_text((ROOT / "deploy/prometheus/alerts.yml").read_text())
    assert "SUCCESS: 11 rules found" in promtool("check", "config", str(tmp_path / "prometheus.yml"))


def promtool(*args: str) -> str:
    """Run Debian's promtool; its output, once it has passed."""
    needs(PROMTOOL)
    checked = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout
