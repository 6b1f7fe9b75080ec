"""Producer client benchmark (make bench-client).

1. record(): one process writes events into a fresh outbox without sending (the sender's work
   is not in the timing); each call timed: p50, p99, events/s. Once with durable="process"
   (the default, synchronous=NORMAL) and once with durable="power" (synchronous=FULL).
2. Delivery against direct batch ingest, in one run on one gunicorn (SQLite, the production
   settings): the same events (1,000 a batch, one connection at a time), alternating in rounds
   so both see the same drift: POSTed directly, as a producer that calls the API itself would,
   against delivered from the outbox by the client's sender (lease, POST, settle). The ratio
   is delivery events/s over direct events/s (target: at least 0.8).

    python loadtest/bench_client.py [--records N] [--rounds N] [--batches N]

Writes loadtest/out/bench-client.json and bench-client.md.
"""

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import EVENT, make_key
from harness import OUT, ROOT, Server, sqlite_database

sys.path.insert(0, str(ROOT / "clients/python"))
from auditlog_client import Client  # noqa: E402
from auditlog_client.client import Sender  # noqa: E402
from auditlog_client.outbox import Outbox  # noqa: E402
from auditlog_client.transport import Transport  # noqa: E402


def record_timings(path: Path, count: int, durable: str) -> dict:
    client = Client("http://127.0.0.1:9", "unused", path, durable=durable, send=False)
    fields = {name: value for name, value in EVENT.items() if name != "outcome"}
    for n in range(200):  # warm-up
        client.record(**fields, idempotency_key=f"warm-{n}")
    samples = []
    started = time.perf_counter()
    for n in range(count):
        begun = time.perf_counter()
        client.record(**fields, idempotency_key=f"r-{durable}-{n}")
        samples.append((time.perf_counter() - begun) * 1000)
    wall = time.perf_counter() - started
    client.close(timeout=0)
    samples.sort()
    return {
        "records": count,
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        "max_ms": round(samples[-1], 3),
        "events_per_s": round(count / wall),
    }


def direct(server: Server, token: str, batches: int, tag: str) -> float:
    """Seconds to POST `batches` batches of 1,000 over one keep-alive connection."""
    occurred_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    event = EVENT | {"occurred_at": occurred_at}  # what the client sends: an explicit time and a key
    bodies = [
        json.dumps({"events": [event | {"idempotency_key": f"{tag}-{b}-{n}"} for n in range(1000)]}).encode()
        for b in range(batches)
    ]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/api/v1/events/batch", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"direct batch answered {response.status}")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def delivered(server: Server, token: str, outbox_path: Path, batches: int, tag: str) -> float:
    """Record batches x 1,000 events into a fresh outbox (not timed), then time the sender
    delivering all of them."""
    client = Client(server_url(server), token, outbox_path, send=False)
    fields = {name: value for name, value in EVENT.items() if name != "outcome"}
    for n in range(batches * 1000):
        client.record(**fields, idempotency_key=f"{tag}-{n}")
    client.close(timeout=0)
    outbox = Outbox(outbox_path)
    sender = Sender(outbox, Transport(server_url(server), token, connect_timeout=5, read_timeout=60))
    started = time.perf_counter()
    while outbox.stats().pending:
        if sender.send_once():
            raise SystemExit(
                f"delivery failed: {outbox.db().execute('SELECT max(last_error) FROM outbox').fetchone()}"
            )
    elapsed = time.perf_counter() - started
    stats = outbox.stats()
    if stats.delivered != batches * 1000 or stats.dead_lettered:
        raise SystemExit(f"delivery incomplete: {stats}")
    sender.transport.close()
    outbox.close()
    return elapsed


def server_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000, help="record() calls timed (default 20,000)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating delivery rounds (default 4)")
    parser.add_argument(
        "--batches", type=int, default=10, help="batches of 1,000 per round and side (default 10)"
    )
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        print("[client] timing record()...", file=sys.stderr)
        report["record, durable=process"] = record_timings(scratch / "a.sqlite3", args.records, "process")
        report["record, durable=power"] = record_timings(scratch / "b.sqlite3", args.records // 4, "power")
        database = sqlite_database("bench-client", fresh=True)
        token = make_key(database)
        server = Server(database, "bench-client")
        try:
            direct(server, token, 2, "warm")
            times = {"direct": 0.0, "delivered": 0.0}
            for round_number in range(args.rounds):
                print(f"[client] delivery round {round_number + 1} of {args.rounds}...", file=sys.stderr)
                times["direct"] += direct(server, token, args.batches, f"d{round_number}")
                times["delivered"] += delivered(
                    server, token, scratch / f"o{round_number}.sqlite3", args.batches, f"c{round_number}"
                )
        finally:
            server.stop()
    events = args.rounds * args.batches * 1000
    report["direct batch ingest"] = {"events": events, "events_per_s": round(events / times["direct"])}
    report["client delivery"] = {"events": events, "events_per_s": round(events / times["delivered"])}
    ratio = times["direct"] / times["delivered"]
    report["delivery / direct"] = round(ratio, 2)
    (OUT / "bench-client.json").write_text(json.dumps(report, indent=2))
    row = "| {} | {records:,} | {p50_ms} | {p99_ms} | {max_ms} | {events_per_s:,} |"
    lines = [
        "Client benchmark, this machine (SQLite service, gunicorn with the production settings).",
        "",
        "| record() | calls | p50 ms | p99 ms | max ms | events/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row.format("durable=process (default)", **report["record, durable=process"]),
        row.format("durable=power", **report["record, durable=power"]),
        "",
        f"Delivery, {events:,} events each way in {args.rounds} alternating rounds of {args.batches} "
        f"batches of 1,000: direct batch POSTs {report['direct batch ingest']['events_per_s']:,} events/s, "
        f"the client's sender {report['client delivery']['events_per_s']:,} events/s: ratio {ratio:.2f} "
        "(target: at least 0.8).",
    ]
    (OUT / "bench-client.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
