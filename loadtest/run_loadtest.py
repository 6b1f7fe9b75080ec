"""make loadtest: gunicorn (production settings) + headless locust on loopback, then the check
that the database holds exactly the acknowledged events.

    python loadtest/run_loadtest.py [--users 64] [--spawn-rate 32] [--time 30s]

Uses a fresh SQLite database, or DATABASE_URL when it is set (then it counts the rows written
with the run's own API key). Exits non-zero on any failure or any difference.
"""

import argparse
import csv
import json
import os
import subprocess
import sys

from harness import OUT, ROOT, Server, django_shell, env_for, manage, sqlite_database

COUNT_ROWS = r"""
import json
from auditlog.models import ActionLog
keys = set(ActionLog.objects.filter(source__prefix="PREFIX").values_list("idempotency_key", flat=True))
print(json.dumps({"rows": ActionLog.objects.filter(source__prefix="PREFIX").count(), "keys": sorted(keys)}))
"""


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=64, help="concurrent producers (default 64)")
    parser.add_argument("--spawn-rate", type=int, default=32, help="users started per second (default 32)")
    parser.add_argument("--time", default="30s", help="how long to run (default 30s)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    database_url = os.environ.get("DATABASE_URL") or sqlite_database("loadtest", fresh=True)
    manage(database_url, "migrate", "--noinput")
    created = manage(database_url, "auditlog_create_key", "--name", "loadtest", "--scopes", "write,read")
    token = created.strip().splitlines()[-1]
    prefix = token.split("_")[1]
    acked_file = OUT / "loadtest-acked.json"
    acked_file.unlink(missing_ok=True)
    server = Server(database_url, "loadtest")
    print(
        f"gunicorn on 127.0.0.1:{server.port} ({database_url.split(':')[0]}); "
        f"locust: {args.users} users, {args.time}"
    )
    try:
        locust = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                "loadtest/locustfile.py",
                "--headless",
                "-u",
                str(args.users),
                "-r",
                str(args.spawn_rate),
                "-t",
                args.time,
                # Let every user finish its request in flight: an answer cut off by the stop would
                # count as stored but not acknowledged.
                "--stop-timeout",
                "30",
                "--host",
                f"http://127.0.0.1:{server.port}",
                "--csv",
                str(OUT / "loadtest"),
                "--only-summary",
            ],
            cwd=ROOT,
            env=env_for(database_url, AUDITLOG_TOKEN=token, AUDITLOG_ACKED_FILE=str(acked_file)),
            capture_output=True,
            text=True,
        )
    finally:
        server.stop()
    if not acked_file.exists():
        raise SystemExit(f"locust did not finish:\n{locust.stderr[-3000:]}")
    acked = set(json.loads(acked_file.read_text()))
    stored = django_shell(database_url, COUNT_ROWS.replace("PREFIX", prefix))
    with open(OUT / "loadtest_stats.csv") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    print(
        f"\n{'request':<24} {'count':>8} {'fails':>6} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    )
    for name, row in rows.items():
        print(
            f"{name:<24} {row['Request Count']:>8} {row['Failure Count']:>6} "
            f"{float(row['Requests/s']):>8.1f} "
            f"{row['50%']:>7} {row['95%']:>7} {row['99%']:>7}"
        )
    failures = int(rows["Aggregated"]["Failure Count"])
    same = stored["rows"] == len(acked) and set(stored["keys"]) == acked
    print(
        f"\nevents acknowledged: {len(acked):,}   rows stored: {stored['rows']:,}   "
        f"{'stored == acknowledged' if same else 'MISMATCH'}   failures: {failures}"
    )
    if failures or not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
