"""Ingest benchmark (make bench): the service against Django's own ceiling and the raw insert limit.

Scenarios, each with the same gunicorn settings (2 workers x 4 threads, production config):
  (a) empty Django JSON endpoint (parses the body, answers 201, no database), on the same
      gunicorn as (b) or (c), alternating with it in rounds so both see the same load drift
  (a0) the same endpoint in a bare Django app (loadtest/bare_app.py: no middleware, no apps),
      on its own gunicorn, alternating in the same rounds: the framework's floor
  (b) single-event POST on SQLite, (c) on PostgreSQL
  (d) batch POSTs of 1,000 events on each database
  (e) the raw insert limit: the rows of (d), built beforehand, bulk-inserted with no framework
      (SQLite executemany, PostgreSQL COPY), 1,000 rows per transaction, one client
  (f) auditlog_seal over everything (b) and (d) stored: events/s into the trail's Merkle tree,
      in the same run as (d), with its default --workers (the CPUs it may use, as the batch
      scenario's gunicorn uses them), over the command's own time (not Python's start)
  (g) single POSTs with `Prefer: receipt` (a signed receipt in each answer), interleaved with
      (b) or (c) on the same gunicorn
  (h) what the metrics cost a single POST: the service with AUDITLOG_METRICS=false against it
      with them on, otherwise alike, each on its own database, loaded together request by
      request; a new pair of gunicorns (warmed by 2,000 requests each) for each of 16 rounds.
      The ratio is of the application's CPU (counting adds nothing to the database's)
Server CPU per request comes from /proc: the gunicorn processes, plus every PostgreSQL process
for PostgreSQL. It is the figure to trust on a shared machine; ratios come from one run.
Writes loadtest/out/bench.json and bench.md.

    python loadtest/bench.py [--requests N] [--batches N] [--skip-memory]
"""

import argparse
import http.client
import itertools
import json
import math
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (
    OUT,
    THREADS,
    Server,
    cpu_snapshot,
    cpu_used,
    django_shell,
    manage,
    postgres_database,
    postgres_pids,
    postgres_reachable,
    rss_kib,
    sqlite_database,
    thread_count,
)

EVENT = {
    "action": "invoice.delete",
    "actor": {"id": "42", "type": "user", "name": "Ada Lovelace"},
    "target": {"type": "invoice", "id": "7", "name": "INV-7"},
    "outcome": "success",
    "context": {"ip": "203.0.113.9", "user_agent": "billing-service/4.2"},
    "metadata": {"reason": "duplicate", "amount_cents": 12900, "currency": "EUR"},
}
RAW_INSERT = r"""
import json, time
from django.db import transaction
from django.utils import timezone
from auditlog.ingest.storage import EventRows, events_insert
from auditlog.keys.services import api_key_create
from auditlog.events.uuid7 import uuid7
from auditlog.events.validation import event_validate
source, _ = api_key_create(name="raw", scopes={"write"})
event = json.loads(EVENT_JSON)
make = EventRows(received_at=timezone.now(), source_id=source.pk)
rows = [make.row(event_validate(event | {"idempotency_key": f"raw-{n}"}), uuid7()) for n in range(COUNT)]
started = time.perf_counter()
for first in range(0, COUNT, 1000):
    with transaction.atomic():
        events_insert(rows[first:first + 1000])
elapsed = time.perf_counter() - started
print(json.dumps({"events": COUNT, "seconds": elapsed}))
"""


def make_key(database_url: str) -> str:
    manage(database_url, "migrate", "--noinput")
    return (
        manage(database_url, "auditlog_create_key", "--name", "bench", "--scopes", "write")
        .strip()
        .splitlines()[-1]
    )


def load(
    server: Server, path: str, bodies, concurrency: int, token: str | None, extra: dict | None = None
) -> dict:
    """Send every body once over `concurrency` keep-alive connections; time each request."""
    return load_together([(server, path, bodies, token, extra)], concurrency)[0]


def load_together(targets: list[tuple], concurrency: int) -> list[dict]:
    """Send every body of each target (server, path, bodies, token, extra headers) once, over
    `concurrency` client threads that each hold a keep-alive connection to every target and
    send one body to each in turn (the first target first every other time). With two targets,
    both servers see the same load at the same moments: what the machine's other work does to
    one it does to the other. The database's CPU, shared, is split evenly between them."""
    sides = []
    for server, path, _, token, extra in targets:
        headers = {"Content-Type": "application/json"} | (
            {"Authorization": f"Bearer {token}"} if token else {}
        )
        sides.append((server, path, headers | (extra or {})))
    queue = zip(*(bodies for _, _, bodies, _, _ in targets), strict=True)
    lock = threading.Lock()
    latencies, statuses = [[] for _ in targets], [{} for _ in targets]

    def connect(side: int) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", sides[side][0].port, timeout=60)

    def client():
        conns = [connect(side) for side in range(len(sides))]
        for turn in itertools.count():
            with lock:
                batch = next(queue, None)
            if batch is None:
                for conn in conns:
                    conn.close()
                return
            for side in range(len(sides))[:: -1 if turn % 2 else 1]:
                started = time.perf_counter()
                try:
                    conns[side].request("POST", sides[side][1], body=batch[side], headers=sides[side][2])
                    response = conns[side].getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    conns[side].close()
                    conns[side] = connect(side)
                    status = "connection error"
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[side].append(elapsed)
                    statuses[side][status] = statuses[side].get(status, 0) + 1

    pids = [server.pids() for server, _, _ in sides]
    before_app, before_db = [cpu_snapshot(p) for p in pids], cpu_snapshot(postgres_pids())
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(client)
    wall = time.perf_counter() - started
    app_cpu = [cpu_used(before, cpu_snapshot(p)) for before, p in zip(before_app, pids, strict=True)]
    db_cpu = cpu_used(before_db, cpu_snapshot(postgres_pids())) / len(sides)
    return [
        _summary(latencies[side], statuses[side], concurrency, wall, app_cpu[side], db_cpu)
        for side in range(len(sides))
    ]


def _summary(latencies, statuses, concurrency, wall, app_cpu, db_cpu) -> dict:
    count = len(latencies)
    latencies = sorted(latencies)
    ok = sum(n for status, n in statuses.items() if status in (200, 201))
    return {
        "requests": count,
        "concurrency": concurrency,
        "errors": count - ok,
        "statuses": {str(k): v for k, v in statuses.items()},
        "requests_per_s": round(count / wall),
        "wall_s": round(wall, 3),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(count * 0.99) - 1] * 1000, 1),
        "app_cpu_us_per_request": round(app_cpu / count * 1e6),
        "db_cpu_us_per_request": round(db_cpu / count * 1e6),
        "_raw": (latencies, statuses, wall, app_cpu, db_cpu),
    }


def interleaved(token, scenarios: dict, rounds: int = 8) -> dict:
    """Run each scenario (on its server) in `rounds` slices, alternating, and merge: on a shared
    machine the load drifts during a run, and alternating exposes every scenario to the same
    drift. Every other round runs them in reverse order, so no scenario always follows another
    (PostgreSQL's background work after a write, counted with the database's CPU, lands on
    whichever runs next)."""
    merged = {name: ([], {}, 0.0, 0.0, 0.0) for name in scenarios}
    concurrency = {}
    for round_number in range(rounds):
        order = list(scenarios.items())[:: -1 if round_number % 2 else 1]
        for name, (server, path, make_bodies, conc, use_token, *extra) in order:
            result = load(server, path, make_bodies(round_number), conc, token if use_token else None, *extra)
            merged[name] = _add(merged[name], result)
            concurrency[name] = conc
    return {name: _summary(*raw[:2], concurrency[name], *raw[2:]) for name, raw in merged.items()}


def single_bodies(count: int, tag: str) -> list[bytes]:
    return [json.dumps(EVENT | {"idempotency_key": f"{tag}-{n}"}).encode() for n in range(count)]


def batch_bodies(batches: int, tag: str) -> list[bytes]:
    return [
        json.dumps({"events": [EVENT | {"idempotency_key": f"{tag}-{b}-{n}"} for n in range(1000)]}).encode()
        for b in range(batches)
    ]


def scenario_database(name: str, database_url: str, args, results: dict) -> None:
    token = make_key(database_url)
    config = {
        "AUDITLOG_BENCH_ENDPOINT": "true",
        "AUDITLOG_RECEIPT_KEY": signer_key(database_url, "receipts.bench.example"),
    }
    server = Server(database_url, f"bench-{name}", **config)
    bare = Server(database_url, f"bench-{name}-bare", app="loadtest.bare_app:application")
    slice_size = args.requests // 8
    try:
        load(bare, "/bench/empty", single_bodies(500, f"{name}-bwarm"), 8, None)
        load(server, "/bench/empty", single_bodies(500, f"{name}-ewarm"), 8, None)
        load(server, "/api/v1/events", single_bodies(500, f"{name}-warm"), 8, token)
        results.update(
            interleaved(
                token,
                {
                    f"bare Django app (beside {name})": (
                        bare,
                        "/bench/empty",
                        lambda r: single_bodies(slice_size, f"{name}-z{r}"),
                        32,
                        False,
                    ),
                    f"empty Django endpoint (beside {name})": (
                        server,
                        "/bench/empty",
                        lambda r: single_bodies(slice_size, f"{name}-e{r}"),
                        32,
                        False,
                    ),
                    f"single POST, {name}": (
                        server,
                        "/api/v1/events",
                        lambda r: single_bodies(slice_size, f"{name}-{r}"),
                        32,
                        True,
                    ),
                    f"single POST with a receipt, {name}": (
                        server,
                        "/api/v1/events",
                        lambda r: single_bodies(slice_size, f"{name}-receipt-{r}"),
                        32,
                        True,
                        {"Prefer": "receipt"},
                    ),
                },
            )
        )
        load(server, "/api/v1/events/batch", batch_bodies(2, f"{name}-bwarm"), 2, token)
        batch = load(server, "/api/v1/events/batch", batch_bodies(args.batches, f"{name}-b"), 4, token)
        batch["events_per_s"] = round(batch["requests"] * 1000 / batch["wall_s"])
        results[f"batch of 1,000, {name}"] = batch
        results[f"sealing, {name}"] = seal_rate(database_url)
        if name == "sqlite":
            results["single POST, sqlite, 64 connections"] = load(
                server, "/api/v1/events", single_bodies(args.requests // 2, "c64"), 64, token
            )
            results["single POST, sqlite, 256 connections"] = load(
                server, "/api/v1/events", single_bodies(args.requests // 2, "c256"), 256, token
            )
    finally:
        server.stop()
        bare.stop()
    metrics_cost(name, config, args, results)
    raw_url = fresh_database(name, "raw")
    manage(raw_url, "migrate", "--noinput")
    code = RAW_INSERT.replace("EVENT_JSON", repr(json.dumps(EVENT))).replace(
        "COUNT", str(args.batches * 1000)
    )
    raw = django_shell(raw_url, code)
    results[f"raw insert limit, {name}"] = {"events_per_s": round(raw["events"] / raw["seconds"])}


METRICS_ROUNDS = 16


def metrics_cost(name: str, config: dict, args, results: dict) -> None:
    """(h) What counting costs a single POST: the service with its metrics on against the same
    service with them off (AUDITLOG_METRICS=false), otherwise configured alike, each on its own
    database. The two are loaded together, request by request (load_together): measured one
    after the other, the machine's other work made pairs of slices read 0.85 to 1.69. And two
    gunicorns started alike differ by several percent in CPU per request for their whole life,
    so every round starts a new pair, warms both past their first requests' one-time work,
    measures, and stops them: the result averages over as many pairs as rounds. The ratio is of
    the application's CPU: counting adds no work to the database."""
    sides, concurrency = {"on": {}, "off": {"AUDITLOG_METRICS": "false"}}, 32
    urls = {side: fresh_database(name, f"metrics-{side}") for side in sides}
    tokens = {side: make_key(url) for side, url in urls.items()}
    totals = {side: ([], {}, 0.0, 0.0, 0.0) for side in sides}
    by_round = {side: [] for side in sides}
    for round_number in range(METRICS_ROUNDS):
        order = list(sides)[:: -1 if round_number % 2 else 1]
        servers = {}
        try:
            for side in order:
                servers[side] = Server(urls[side], f"bench-{name}-metrics-{side}", **config, **sides[side])

            def targets(count: int, tag: str, order=order, servers=servers) -> list[tuple]:
                return [
                    (
                        servers[side],
                        "/api/v1/events",
                        single_bodies(count, f"{tag}-{side}"),
                        tokens[side],
                        None,
                    )
                    for side in order
                ]

            load_together(targets(2000, f"{name}-h{round_number}-warm"), concurrency)
            measured = load_together(
                targets(args.requests // METRICS_ROUNDS, f"{name}-h{round_number}"), concurrency
            )
            for side, result in zip(order, measured, strict=True):
                totals[side] = _add(totals[side], result)
                by_round[side].append(result["app_cpu_us_per_request"])
        finally:
            for server in servers.values():
                server.stop()
    for side, raw in totals.items():
        results[f"single POST, metrics {side} (h), {name}"] = _summary(*raw[:2], concurrency, *raw[2:]) | {
            "app_cpu_us_per_request_by_round": by_round[side]
        }


def fresh_database(name: str, tag: str) -> str:
    """A new, empty database of the kind `name` (sqlite or postgres) names."""
    if name == "sqlite":
        return sqlite_database(f"bench-{tag}", fresh=True)
    return postgres_database(f"auditlog_bench_{tag.replace('-', '_')}", fresh=True)


def _add(total: tuple, result: dict) -> tuple:
    """A scenario's raw figures so far, with one more slice's."""
    latencies, statuses, wall, app_cpu, db_cpu = total
    r_latencies, r_statuses, r_wall, r_app, r_db = result["_raw"]
    statuses = statuses | {status: statuses.get(status, 0) + n for status, n in r_statuses.items()}
    return latencies + r_latencies, statuses, wall + r_wall, app_cpu + r_app, db_cpu + r_db


def signer_key(database_url: str, name: str) -> str:
    """A new Ed25519 signer key (C2SP signed notes), as auditlog_keygen makes one."""
    return django_shell(
        database_url,
        "import json; from auditlog.trail.note import Signer; "
        f"print(json.dumps({{'key': Signer.generate({name!r}).text()}}))",
    )["key"]


def seal_rate(database_url: str) -> dict:
    """auditlog_seal over everything the scenarios stored (the server stopped): events/s into the
    trail's tree, a checkpoint signed, its default --workers (docs/trail-format.md). The rate is
    over the command's own time (reading, hashing, writing, signing), as a running worker
    (`--follow`) seals: not the interpreter's start and Django's setup, paid once per worker,
    which the wall time beside it includes."""
    skey = signer_key(database_url, "bench.example/log")
    started = time.monotonic()
    out = manage(database_url, "auditlog_seal", AUDITLOG_TRAIL_KEY=skey, AUDITLOG_SEAL_DELAY_SECONDS="0")
    wall = time.monotonic() - started
    found = re.search(r"Added ([\d,]+) events to the trail's tree in ([\d.]+) s", out)
    sealed, seconds = int(found.group(1).replace(",", "")), float(found.group(2))
    return {
        "events": sealed,
        "seconds": seconds,
        "wall_s": round(wall, 2),
        "events_per_s": round(sealed / seconds),
    }


def memory(args, results: dict) -> None:
    """Worker resident memory over 100,000 single POSTs (SQLite), after a warm-up.

    A gthread worker starts a thread (and its database connection, with its page cache) only
    when it has that many requests at once, and keep-alive connections spread unevenly over
    the workers: one run's 64 warm-up connections all went to one worker, and the other's
    first reading was of a worker that had served nothing (55 MB, 60 MB once it had). So the
    warm-up goes on until every worker runs all its threads.
    """
    database_url = fresh_database("sqlite", "memory")
    token = make_key(database_url)
    server = Server(database_url, "bench-memory")
    try:
        for round_number in range(10):
            load(server, "/api/v1/events", single_bodies(10_000, f"warm{round_number}"), 64, token)
            # the request threads, the main thread and the body-deadline watchdog
            if all(thread_count(pid) >= THREADS + 2 for pid in server.worker_pids()):
                break
        early = {pid: rss_kib(pid) for pid in server.worker_pids()}
        threads = {pid: thread_count(pid) for pid in server.worker_pids()}
        for round_number in range(10):
            load(server, "/api/v1/events", single_bodies(10_000, f"m{round_number}"), 16, token)
        late = {pid: rss_kib(pid) for pid in server.worker_pids()}
        late_threads = {pid: thread_count(pid) for pid in server.worker_pids()}
    finally:
        server.stop()
    growth = max((late[pid] - early[pid]) / early[pid] for pid in early)
    results["worker memory, 100,000 single POSTs"] = {
        "threads_after_warm_up": threads,
        "threads_at_end": late_threads,
        "rss_kib_after_warm_up": early,
        "rss_kib_100k_later": late,
        "max_growth_percent": round(growth * 100, 1),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=20_000, help="single POSTs per scenario (default 20,000)"
    )
    parser.add_argument("--batches", type=int, default=50, help="batches of 1,000 per database (default 50)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 100,000-request memory run")
    args = parser.parse_args()
    results = {}
    scenario_database("sqlite", fresh_database("sqlite", "ingest"), args, results)
    if postgres_reachable():
        scenario_database("postgres", fresh_database("postgres", "ingest"), args, results)
    else:
        print("PostgreSQL unreachable: its scenarios are skipped", file=sys.stderr)
    if not args.skip_memory:
        memory(args, results)
    report(results)


# The targets of the ratios, in their order: ceilings (<=) on CPU per request, floors (>=) on
# the share of the raw insert limit a batch reaches.
TARGETS = (
    "<= 2.3",
    "<= 2.8",
    "<= 2.0",
    "<= 2.5",
    ">= 0.5",
    ">= 0.5",
    ">= 2.0",
    ">= 2.0",
    "<= 1.05",
    "<= 1.05",
    "<= 1.05",
    "<= 1.05",
)


def _met(value, target: str) -> str:
    if not value:
        return "not measured"
    bound = float(target.split()[1])
    return "yes" if (value <= bound if target.startswith("<=") else value >= bound) else "no"


def ratio(results, numerator, denominator, key):
    if numerator in results and denominator in results:
        return round(results[numerator][key] / results[denominator][key], 2)
    return None


def report(results: dict) -> None:
    for row in results.values():
        row.pop("_raw", None)

    def total_cpu(name):
        row = results.get(name)
        return row and row["app_cpu_us_per_request"] + row["db_cpu_us_per_request"]

    def cpu_ratio(database, floor="empty Django endpoint"):
        single = total_cpu(f"single POST, {database}")
        empty = total_cpu(f"{floor} (beside {database})")
        return single and empty and round(single / empty, 2)

    def receipt_ratio(database):
        single, receipt = (
            total_cpu(f"single POST, {database}"),
            total_cpu(f"single POST with a receipt, {database}"),
        )
        return single and receipt and round(receipt / single, 2)

    def metrics_ratio(database):  # the application's CPU: counting adds nothing to the database's
        on = results.get(f"single POST, metrics on (h), {database}")
        off = results.get(f"single POST, metrics off (h), {database}")
        return on and off and round(on["app_cpu_us_per_request"] / off["app_cpu_us_per_request"], 3)

    ratios = {
        "b/a0 CPU per request, single POST SQLite / bare Django app (interleaved)": cpu_ratio(
            "sqlite", "bare Django app"
        ),
        "c/a0 CPU per request, single POST PostgreSQL incl. database / bare Django app (interleaved)": (
            cpu_ratio("postgres", "bare Django app")
        ),
        "b/a CPU per request, single POST SQLite / empty (interleaved)": cpu_ratio("sqlite"),
        "c/a CPU per request, single POST PostgreSQL incl. database / empty (interleaved)": cpu_ratio(
            "postgres"
        ),
        "d/e batch events/s / raw insert limit, SQLite": ratio(
            results, "batch of 1,000, sqlite", "raw insert limit, sqlite", "events_per_s"
        ),
        "d/e batch events/s / raw insert limit, PostgreSQL": ratio(
            results, "batch of 1,000, postgres", "raw insert limit, postgres", "events_per_s"
        ),
        "f/d sealing events/s / batch ingest events/s, SQLite": ratio(
            results, "sealing, sqlite", "batch of 1,000, sqlite", "events_per_s"
        ),
        "f/d sealing events/s / batch ingest events/s, PostgreSQL": ratio(
            results, "sealing, postgres", "batch of 1,000, postgres", "events_per_s"
        ),
        "g/b CPU per request, single POST with a signed receipt / without, SQLite (interleaved)": (
            receipt_ratio("sqlite")
        ),
        "g/c CPU per request, single POST with a signed receipt / without, PostgreSQL (interleaved)": (
            receipt_ratio("postgres")
        ),
        "h app CPU per request, single POST, metrics on / off, SQLite (16 new pairs)": metrics_ratio(
            "sqlite"
        ),
        "h app CPU per request, single POST, metrics on / off, PostgreSQL (16 new pairs)": metrics_ratio(
            "postgres"
        ),
    }
    targets = dict(zip(ratios, TARGETS, strict=True))
    (OUT / "bench.json").write_text(
        json.dumps({"results": results, "ratios": ratios, "targets": targets}, indent=2)
    )
    header = (
        "| scenario | requests | conc. | errors | req/s | p50 ms | p99 ms "
        "| app CPU µs/req | DB CPU µs/req | events/s |"
    )
    lines = [header, "|" + " --- |" + " ---: |" * 9]
    for name, row in results.items():
        if "requests" in row:
            events = f"{row['events_per_s']:,}" if "events_per_s" in row else ""
            cells = [
                f"{row['requests']:,}",
                row["concurrency"],
                row["errors"],
                f"{row['requests_per_s']:,}",
                row["p50_ms"],
                row["p99_ms"],
                row["app_cpu_us_per_request"],
                row["db_cpu_us_per_request"],
                events,
            ]
            lines.append(f"| {name} | " + " | ".join(map(str, cells)) + " |")
        elif "events_per_s" in row:
            lines.append(f"| {name} |" + " |" * 8 + f" {row['events_per_s']:,} |")
    lines += ["", "| ratio | value | target | met |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {k} | {v} | {targets[k]} | {_met(v, targets[k])} |" for k, v in ratios.items()]
    for database in ("sqlite", "postgres"):
        on = results.get(f"single POST, metrics on (h), {database}")
        off = results.get(f"single POST, metrics off (h), {database}")
        if on and off:
            pairs = [
                a / b
                for a, b in zip(
                    on["app_cpu_us_per_request_by_round"], off["app_cpu_us_per_request_by_round"], strict=True
                )
            ]
            logs = [math.log(r) for r in pairs]
            spread = 2 * statistics.stdev(logs) / math.sqrt(len(logs))
            middle = statistics.fmean(logs)
            lines.append(
                f"\n(h) {database}, the application's CPU, metrics on / off, pair by pair: "
                f"{', '.join(f'{r:.3f}' for r in pairs)}; "
                f"their geometric mean {math.exp(middle):.3f} (±2 standard errors: "
                f"{math.exp(middle - spread):.3f} to {math.exp(middle + spread):.3f})."
            )
    if "worker memory, 100,000 single POSTs" in results:
        row = results["worker memory, 100,000 single POSTs"]
        lines += [
            "",
            f"Worker RSS over 100,000 single POSTs (after a warm-up): "
            f"{row['rss_kib_after_warm_up']} → {row['rss_kib_100k_later']} KiB "
            f"(max growth {row['max_growth_percent']}%; threads per worker "
            f"{row['threads_after_warm_up']} → {row['threads_at_end']}).",
        ]
    table = "\n".join(lines)
    (OUT / "bench.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
