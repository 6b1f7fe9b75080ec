"""Scale benchmark (make bench-scale): PostgreSQL with 10,000,000 events, partitioned by month.

1. Load: auditlog_demo's events (spread over the last 90 days: three or four monthly partitions),
   kept for later runs; ANALYZE.
2. Pages: the read benchmark's admin and API pages (loadtest/bench_read.py) over gunicorn.
3. Ingest with partitions against without, in one run: the same prepared rows COPYed in
   transactions of 1,000 (as the API's batches store events) into the partitioned table and into
   a plain table of the same columns, indexes and foreign key (LIKE ... INCLUDING ALL) that holds the same
   rows as the partition receiving them, alternating in rounds so both see the same load drift.
5. The interval: the API's first page and an event by id, planned and run over 12 (a year of
   months), 52 (of weeks) and 365 (of days) partitions of the events table's shape, each holding
   a few rows: what a query pays per partition it cannot prune (the default is a month).
4. Retention: one partition dropped whole (auditlog.trail.retention.partition_drop: DETACH
   CONCURRENTLY, its keys, DROP) against the batched delete auditlog_purge makes at the
   boundary (a delete permit, the rows' keys, 1,000 rows per transaction), timed on another
   partition's rows. The two partitions differ in size, so both are given per event as well.

Everything is bounded: --events, --ingest-rows, --delete-rows (the batched delete stops there
and its rate stands for the rest). Writes loadtest/out/bench-scale.json and bench-scale.md.

    python loadtest/bench_scale.py [--events N] [--ingest-rows N] [--delete-rows N]
"""

import argparse
import json
import sys
import time

from bench_read import chart_table, run_database
from harness import OUT, SETUP_BOUNDS, django_shell, manage, postgres_database, postgres_reachable

INGEST = r"""
import json, random, time
from datetime import timedelta
from django.db import connection, transaction
from django.utils import timezone
from auditlog.db.partitions import partition_ensure
from auditlog.ingest.demo import demo_rows
from auditlog.ingest.storage import COLUMNS, rows_prepare

ROWS, ROUNDS = INGEST_ROWS, 10
now = timezone.now()
part = partition_ensure(now)
source_id = SOURCE_ID
# demo rows, received in the last minute: all into the current partition
at = COLUMNS.index("received_at"), COLUMNS.index("occurred_at")
rows = []
for n, row in enumerate(demo_rows(ROWS, source_id, seed=77, end=now)):
    row = list(row)
    row[at[0]] = row[at[1]] = now - timedelta(microseconds=60_000_000 - n)
    rows.append(tuple(row))
rows = rows_prepare(rows)
with connection.cursor() as cursor:
    cursor.execute("DROP TABLE IF EXISTS bench_flat")
    cursor.execute("CREATE TABLE bench_flat (LIKE auditlog_actionlog INCLUDING ALL)")
    # LIKE copies no foreign key; the events' one (checked at each commit) goes along
    cursor.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'auditlog_actionlog'::regclass AND contype = 'f'"
    )
    for (definition,) in cursor.fetchall():
        cursor.execute(f"ALTER TABLE bench_flat ADD {definition}")
    cursor.execute(f"INSERT INTO bench_flat SELECT * FROM {part.name}")
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence('bench_flat', 'id'), (SELECT max(id) FROM auditlog_actionlog))"
    )
    cursor.execute("ANALYZE bench_flat")
    cursor.execute(f"ANALYZE {part.name}")
    cursor.execute(f"SELECT count(*) FROM {part.name}")
    held = cursor.fetchone()[0]

def copy(table, chunk):
    started = time.perf_counter()
    for start in range(0, len(chunk), 1000):
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as out:
                for row in chunk[start:start + 1000]:
                    out.write_row(row)
    return time.perf_counter() - started

seconds = {"partitioned": 0.0, "plain": 0.0}
step = len(rows) // ROUNDS
tables = ["auditlog_actionlog", "bench_flat"]
for r in range(ROUNDS):
    chunk = rows[r * step:(r + 1) * step]
    for table in tables if r % 2 == 0 else tables[::-1]:  # the same rows to both, in turn first
        seconds["partitioned" if table == "auditlog_actionlog" else "plain"] += copy(table, chunk)
with connection.cursor() as cursor:
    cursor.execute("DROP TABLE bench_flat")
each = step * ROUNDS
print(json.dumps({
    "rows_each": each,
    "rows_already_in_the_partition": held,
    "partitioned_rows_per_s": round(each / seconds["partitioned"]),
    "plain_rows_per_s": round(each / seconds["plain"]),
}))
"""

RETENTION = r"""
import json, time
from django.db import connection, transaction
from django.utils import timezone
from auditlog.db.partitions import partitions_list
from auditlog.models import ActionLog
from auditlog.trail.append_only import delete_permit_grant, delete_permit_revoke
from auditlog.trail.retention import PartitionPurge, _keys_delete_of_events, partition_drop

now = timezone.now()
old = [part for part in partitions_list() if part.upper <= now]
with connection.cursor() as cursor:
    sizes = {}
    for part in old:
        cursor.execute(f"SELECT count(*), coalesce(max(id), 0) FROM {part.name}")
        sizes[part.name] = cursor.fetchone()
if len(old) < 2:
    print(json.dumps({"skipped": "fewer than two partitions wholly in the past"}))
    raise SystemExit
batched, dropped = sorted(old[:2], key=lambda part: sizes[part.name][0])  # the smaller one in batches

deleted, started = 0, time.perf_counter()
while deleted < DELETE_ROWS:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max(id) FROM (SELECT id FROM {batched.name} ORDER BY id LIMIT 1000) s")
        upper = cursor.fetchone()[0]
    if upper is None:
        break
    with transaction.atomic():
        delete_permit_grant("bench_scale")
        _keys_delete_of_events(upper)
        # auditlog_purge's batch, bounded to the partition's time range (rows of earlier runs
        # hold lower ids in every period)
        deleted += ActionLog.objects.filter(
            id__lte=upper, received_at__gte=batched.lower, received_at__lt=batched.upper
        ).delete()[0]
        delete_permit_revoke()
batched_seconds = time.perf_counter() - started

started = time.perf_counter()
partition_drop(dropped, 1000)
drop_seconds = time.perf_counter() - started
dropped_rows = sizes[dropped.name][0]
rate = deleted / batched_seconds
print(json.dumps({
    "batched_partition": batched.name, "batched_rows": deleted, "batched_seconds": round(batched_seconds, 1),
    "batched_rows_per_s": round(rate),
    "dropped_partition": dropped.name, "dropped_rows": dropped_rows, "drop_seconds": round(drop_seconds, 3),
    "batched_seconds_for_the_dropped_rows": round(dropped_rows / rate, 1),
}))
"""


INTERVAL = r"""
import json, statistics, time
from datetime import datetime, timedelta, UTC
from django.db import connection

def median_ms(cursor, sql, runs=15):
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        cursor.execute(sql)
        cursor.fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)

report = {}
with connection.cursor() as cursor:
    for count, step in ((12, timedelta(days=30)), (52, timedelta(days=7)), (365, timedelta(days=1))):
        cursor.execute("DROP TABLE IF EXISTS bench_interval")
        cursor.execute("CREATE TABLE bench_interval (LIKE auditlog_actionlog INCLUDING DEFAULTS INCLUDING "
                       "CONSTRAINTS) PARTITION BY RANGE (received_at)")
        cursor.execute("CREATE INDEX ON bench_interval (occurred_at, id)")
        cursor.execute("CREATE INDEX ON bench_interval (id)")
        start = datetime(2025, 1, 1, tzinfo=UTC)
        for n in range(count):
            cursor.execute(f"CREATE TABLE bench_interval_{n} PARTITION OF bench_interval FOR VALUES FROM "
                           f"('{start + step * n}') TO ('{start + step * (n + 1)}')")
        # a few rows in every partition: recent events, each moved into one of the periods
        cursor.execute("DROP TABLE IF EXISTS bench_rows")
        cursor.execute("CREATE TEMPORARY TABLE bench_rows AS SELECT * FROM auditlog_actionlog LIMIT %s",
                       [count * 20])
        cursor.execute("UPDATE bench_rows SET received_at = %s + (id %% %s) * %s", [start, count, step])
        cursor.execute("INSERT INTO bench_interval SELECT * FROM bench_rows")
        cursor.execute("ANALYZE bench_interval")
        report[count] = {
            "first_page_ms": median_ms(
                cursor, "SELECT * FROM bench_interval ORDER BY occurred_at DESC, id DESC LIMIT 51"
            ),
            "by_id_ms": median_ms(cursor, "SELECT * FROM bench_interval WHERE id = 1"),
        }
    cursor.execute("DROP TABLE bench_interval")
print(json.dumps(report))
"""


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="events loaded (default 10,000,000)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (default 20)")
    parser.add_argument("--ingest-rows", type=int, default=400_000, help="rows COPYed into each table")
    parser.add_argument(
        "--delete-rows",
        type=int,
        default=500_000,
        help="rows the batched delete removes at most (default 500,000)",
    )
    args = parser.parse_args()
    if not postgres_reachable():
        raise SystemExit("bench-scale needs PostgreSQL at 127.0.0.1:5432")
    OUT.mkdir(exist_ok=True)
    url = postgres_database("auditlog_bench_scale", fresh=False)
    report = {"events": args.events}
    started = time.monotonic()
    print(f"[scale] loading up to {args.events:,} events (kept for later runs)...", file=sys.stderr)
    report["read"] = run_database("postgres", url, args.events, args.requests)
    report["load_and_read_seconds"] = round(time.monotonic() - started)
    print("[scale] ingest: partitioned against plain...", file=sys.stderr)
    source = django_shell(
        url,
        "import json; from auditlog.keys.services import api_key_create; "
        "print(json.dumps({'id': api_key_create(name='bench-scale', scopes={'write'})[0].pk}))",
    )
    report["ingest"] = django_shell(
        url,
        INGEST.replace("INGEST_ROWS", str(args.ingest_rows)).replace("SOURCE_ID", str(source["id"])),
        **SETUP_BOUNDS,
    )
    print("[scale] retention: a partition dropped against batched deletes...", file=sys.stderr)
    report["retention"] = django_shell(
        url, RETENTION.replace("DELETE_ROWS", str(args.delete_rows)), **SETUP_BOUNDS
    )
    print("[scale] the interval: queries over 12, 52 and 365 partitions...", file=sys.stderr)
    report["interval"] = django_shell(url, INTERVAL, **SETUP_BOUNDS)
    manage(url, "auditlog_partitions", "--list")
    (OUT / "bench-scale.json").write_text(json.dumps(report, indent=2))
    ingest, retention = report["ingest"], report["retention"]
    events = report["read"]["events"]
    lines = [
        f"Scale benchmark: PostgreSQL, {events:,} events in monthly partitions, this machine.",
        "",
        "| page | p50 ms | p95 ms |",
        "| --- | ---: | ---: |",
        *(f"| {page} | {t['p50_ms']} | {t['p95_ms']} |" for page, t in report["read"]["pages"].items()),
        *chart_table({"postgres": report["read"]}),
        "",
        f"Ingest (COPY, 1,000 rows a transaction, {ingest['rows_each']:,} rows each, the partition holding "
        f"{ingest['rows_already_in_the_partition']:,}): partitioned {ingest['partitioned_rows_per_s']:,} "
        f"rows/s, plain table {ingest['plain_rows_per_s']:,} rows/s "
        f"(ratio {ingest['partitioned_rows_per_s'] / ingest['plain_rows_per_s']:.2f}).",
    ]
    if "skipped" not in retention:
        r = retention
        lines.append(
            f"Retention: {r['dropped_partition']} ({r['dropped_rows']:,} events) dropped in "
            f"{r['drop_seconds']} s; batched deletes ran at {r['batched_rows_per_s']:,} events/s "
            f"({r['batched_rows']:,} of {r['batched_partition']} in {r['batched_seconds']} s),"
            f" so {r['batched_seconds_for_the_dropped_rows']} s for the dropped partition's events "
            f"(ratio {r['drop_seconds'] / r['batched_seconds_for_the_dropped_rows']:.4f})."
        )
    lines += [
        "",
        "| partitions (a year of) | first page ms | event by id ms |",
        "| --- | ---: | ---: |",
        *(
            f"| {count} ({ {'12': 'months', '52': 'weeks', '365': 'days'}[count] }) | "
            f"{t['first_page_ms']} | {t['by_id_ms']} |"
            for count, t in report["interval"].items()
        ),
    ]
    table = "\n".join(lines)
    (OUT / "bench-scale.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
