"""Read-side benchmark: admin changelists and API pages over 1,000,000 events (make bench-read).

For each database: load the demo events once (kept for later runs), start gunicorn with the
production settings on a loopback port, log into the admin, and time each page (sequential
requests after a warm-up). Prints a markdown table; writes JSON next to it.

    python loadtest/bench_read.py [--events N] [--requests N] [--databases sqlite,postgres]
"""

import argparse
import json
import re
import statistics
import sys
import time
from urllib.parse import urlencode

from harness import (
    OUT,
    SETUP_BOUNDS,
    Server,
    django_shell,
    manage,
    postgres_database,
    postgres_reachable,
    sqlite_database,
)

PASSWORD = "bench-password-1"


def prepare(database_url: str, events: int) -> dict:
    """Create the database if needed, load the events, ANALYZE; return ids for the requests."""
    manage(database_url, "migrate", "--noinput")
    return django_shell(database_url, PREPARE.replace("EVENTS", str(events)), **SETUP_BOUNDS)


# Runs inside `manage.py shell` against the benchmark database.
PREPARE = r"""
import json, sys
from datetime import timedelta
from io import StringIO
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from auditlog.reading.keyset import cursor_encode
from auditlog.models import ActionLog
from auditlog.keys.services import api_key_create

have = ActionLog.objects.count()
if have < EVENTS:
    print(f"loading {EVENTS - have:,} demo events...", file=sys.stderr)
    call_command("auditlog_demo", "--count", str(EVENTS - have), "--seed", "2026", stdout=StringIO())
with connection.cursor() as cursor:
    # PostgreSQL: VACUUM too, as autovacuum has done on a table that has stood a while (the
    # visibility map lets index-only scans skip the rows).
    cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
User = get_user_model()
if not User.objects.filter(username="bench").exists():
    User.objects.create_superuser("bench", "b@example.com", "bench-password-1")
_, token = api_key_create(name="bench-reader", scopes={"read_all"})  # "read" sees only its own source
newest = ActionLog.objects.order_by("-occurred_at", "-id")
deep = newest.values("occurred_at", "id")[EVENTS // 2]
top = ActionLog.objects.filter(actor_id="10000").count()
latest = newest.values("occurred_at", "id", "target_type", "target_id").first()
print(json.dumps({
    "events": ActionLog.objects.count(),
    "token": token,
    "deep_cursor": cursor_encode(deep["occurred_at"], deep["id"]),
    "top_actor": "10000",
    "top_actor_events": top,
    "typical_actor": "10500",
    "target": [latest["target_type"], latest["target_id"]],
    "detail_pk": latest["id"],
    "since": (latest["occurred_at"] - timedelta(days=30)).strftime("%Y-%m-%d"),
    "until": (latest["occurred_at"] - timedelta(days=20)).strftime("%Y-%m-%d"),
    "since_90": (latest["occurred_at"] - timedelta(days=90)).strftime("%Y-%m-%d"),
}))
"""


def admin_session(server: Server) -> str:
    _, headers, _ = server.request("GET", "/admin/login/")
    csrf = re.search(r"csrftoken=([^;]+)", dict(headers).get("Set-Cookie", ""))[1]
    body = urlencode(
        {"username": "bench", "password": PASSWORD, "csrfmiddlewaretoken": csrf, "next": "/admin/"}
    )
    status, headers, _ = server.request(
        "POST",
        "/admin/login/",
        body,
        {
            "Cookie": f"csrftoken={csrf}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": "http://127.0.0.1/",
        },
    )
    session = [v for k, v in headers if k == "Set-Cookie" and v.startswith("sessionid=")]
    if status != 302 or not session:
        raise SystemExit(f"admin login failed: {status}")
    return session[0].split(";")[0]


def time_page(server: Server, path: str, headers: dict, requests: int) -> dict:
    for _ in range(3):  # warm-up: connections, caches
        status, _, _ = server.request("GET", path, None, headers)
        if status != 200:
            raise SystemExit(f"{path} answered {status}")
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        server.request("GET", path, None, headers)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1),
        "max_ms": round(samples[-1], 1),
    }


def pages(info: dict) -> list[tuple[str, str, str]]:
    admin = "/admin/auditlog/actionlog/"
    target_type, target_id = info["target"]
    return [
        ("admin", "changelist, unfiltered", admin),
        ("admin", "filtered by action (common)", f"{admin}?action=document.view"),
        ("admin", "filtered by action (rare)", f"{admin}?action=webhook.delete"),
        ("admin", "filtered by date range", f"{admin}?since={info['since']}&until={info['until']}"),
        ("admin", "filtered by outcome=failure", f"{admin}?outcome__exact=failure"),
        (
            "admin",
            f"search: busiest actor ({info['top_actor_events']:,} events)",
            f"{admin}?q={info['top_actor']}",
        ),
        ("admin", "search: typical actor", f"{admin}?q={info['typical_actor']}"),
        ("admin", "search: target", f"{admin}?q=target:{target_type}:{target_id}"),
        ("admin", "event detail", f"{admin}{info['detail_pk']}/change/"),
        ("api", "first page (50)", "/api/v1/events?limit=50"),
        ("api", "page 10,000 (cursor 500,000 deep)", f"/api/v1/events?limit=50&cursor={info['deep_cursor']}"),
        ("api", "filtered: action", "/api/v1/events?action=document.view&limit=50"),
        ("api", "filtered: action prefix", "/api/v1/events?action=invoice.*&limit=50"),
        ("api", "filtered: busiest actor", f"/api/v1/events?actor_id={info['top_actor']}&limit=50"),
        ("api", "filtered: target", f"/api/v1/events?target_type={target_type}&target_id={target_id}"),
        (
            "api",
            "filtered: date range",
            f"/api/v1/events?since={info['since']}T00:00:00Z&until={info['until']}T00:00:00Z",
        ),
        ("api", "page of 500", "/api/v1/events?limit=500"),
    ]


# The activity chart alone, in this process: the changelist's queryset for each admin page's
# filters, then activity_chart on it, timed and its queries counted.
CHART = r"""
import json, statistics, time
from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from auditlog.admin.chart import activity_chart
from auditlog.models import ActionLog

user = get_user_model().objects.get(username="bench")
admin = site._registry[ActionLog]
results = {}
for label, query in QUERIES:
    request = RequestFactory().get("/admin/auditlog/actionlog/" + query)
    request.user = user
    queryset = admin.get_changelist_instance(request).queryset
    activity_chart(request, queryset)  # warm-up
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            chart = activity_chart(request, queryset)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    results[label] = {
        "p50_ms": round(statistics.median(samples), 1),
        "max_ms": round(samples[-1], 1),
        "bars": len(chart.bars),
        "queries": len(queries),
    }
print(json.dumps(results))
"""


def time_charts(database_url: str, info: dict, runs: int) -> dict:
    admin = "/admin/auditlog/actionlog/"
    queries = [(label, path[len(admin) :]) for kind, label, path in pages(info) if kind == "admin"]
    queries = [(label, query) for label, query in queries if not query.endswith("/change/")]
    queries.append(("last 90 days (weekly bars)", f"?since={info['since_90']}"))
    code = CHART.replace("QUERIES", repr(queries)).replace("RUNS", str(runs))
    return django_shell(database_url, code)


def run_database(name: str, database_url: str, events: int, requests: int) -> dict:
    print(
        f"[{name}] preparing {events:,} events (first run loads them; later runs reuse them)...",
        file=sys.stderr,
    )
    started = time.monotonic()
    info = prepare(database_url, events)
    print(f"[{name}] ready in {time.monotonic() - started:.0f} s; timing pages...", file=sys.stderr)
    server = Server(database_url, f"bench-read-{name}")
    try:
        headers = {
            "admin": {"Cookie": admin_session(server)},
            "api": {"Authorization": f"Bearer {info['token']}"},
        }
        results = {}
        for kind, label, path in pages(info):
            results[f"{kind}: {label}"] = time_page(server, path, headers[kind], requests)
    finally:
        server.stop()
    print(f"[{name}] timing the activity chart alone...", file=sys.stderr)
    return {"events": info["events"], "pages": results, "charts": time_charts(database_url, info, requests)}


def chart_table(report: dict) -> list[str]:
    """The markdown lines of the chart's timings, per database of `report`."""
    names = [name for name in report if report[name].get("charts")]
    if not names:
        return []
    lines = [
        "",
        "The activity chart alone (in the admin's process, the changelist's filters; part of the "
        "admin pages above). Milliseconds, bars, queries.",
        "",
        "| chart for | " + " | ".join(f"{n} p50 | {n} max | bars | queries" for n in names) + " |",
        "| --- | " + " | ".join("---: | ---: | ---: | ---:" for _ in names) + " |",
    ]
    for chart in report[names[0]]["charts"]:
        cells = " | ".join(
            "{p50_ms} | {max_ms} | {bars} | {queries}".format(**report[n]["charts"][chart]) for n in names
        )
        lines.append(f"| {chart} | {cells} |")
    return lines


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events in each database (default 1,000,000)"
    )
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (default 20)")
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="which databases (default sqlite,postgres)"
    )
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    urls = {"sqlite": sqlite_database("bench-read", fresh=False), "postgres": None}
    report = {}
    for name in args.databases.split(","):
        if name == "postgres":
            if not postgres_reachable():
                print("[postgres] skipped: unreachable", file=sys.stderr)
                continue
            urls[name] = postgres_database("auditlog_bench", fresh=False)
        report[name] = run_database(name, urls[name], args.events, args.requests)
    (OUT / "bench-read.json").write_text(json.dumps(report, indent=2))
    names = list(report)
    lines = [
        f"Read benchmark: {args.events:,} events, {args.requests} sequential requests per page after "
        "warm-up, gunicorn 2 workers x 4 threads, this machine. Milliseconds.",
        "",
        "| page | " + " | ".join(f"{n} p50 | {n} p95" for n in names) + " |",
        "| --- | " + " | ".join("---: | ---:" for _ in names) + " |",
    ]
    for page in report[names[0]]["pages"] if names else []:
        cells = " | ".join(
            f"{report[n]['pages'][page]['p50_ms']} | {report[n]['pages'][page]['p95_ms']}" for n in names
        )
        lines.append(f"| {page} | {cells} |")
    slowest = max((p["p95_ms"] for r in report.values() for p in r["pages"].values()), default=0)
    lines += ["", f"Slowest p95: {slowest} ms (target: every page under 300 ms)."]
    lines += chart_table(report)
    table = "\n".join(lines)
    (OUT / "bench-read.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
