"""auditlog-client: look at and act on an outbox, for operators.

    auditlog-client --outbox PATH status
    auditlog-client --outbox PATH flush [--timeout S]      (needs --url and --token)
    auditlog-client --outbox PATH dead-letters [--limit N]
    auditlog-client --outbox PATH retry [KEY ...]           (all dead letters without keys)

--url and --token default to AUDITLOG_URL and AUDITLOG_TOKEN. Exit status: 0, or 1 when flush
timed out, or 2 for a usage error.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from auditlog_client.outbox import Outbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="auditlog-client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outbox", required=True, help="the outbox's SQLite file")
    parser.add_argument("--url", default=os.environ.get("AUDITLOG_URL"), help="the service (AUDITLOG_URL)")
    parser.add_argument(
        "--token", default=os.environ.get("AUDITLOG_TOKEN"), help="a write key (AUDITLOG_TOKEN)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "status", help="pending, delivered and dead-lettered counts, the oldest pending age (JSON)"
    )
    flush = commands.add_parser(
        "flush", help="deliver everything pending now; exit 1 if the timeout passes first"
    )
    flush.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    dead = commands.add_parser("dead-letters", help="the events the service refused for good, with its error")
    dead.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    retry = commands.add_parser("retry", help="move dead letters back to the outbox, to be sent again")
    retry.add_argument("keys", nargs="*", help="their idempotency keys (default: all)")
    args = parser.parse_args(argv)

    if not Path(args.outbox).exists():
        parser.error(f"{args.outbox}: no such outbox")
    if args.command == "flush":
        if not (args.url and args.token):
            parser.error("flush needs --url and --token (or AUDITLOG_URL and AUDITLOG_TOKEN)")
        from auditlog_client.client import Client

        client = Client(args.url, args.token, args.outbox)
        done = client.close(timeout=args.timeout)
        print(json.dumps({"flushed": done, **client.outbox.__class__(args.outbox).stats().as_dict()}))
        return 0 if done else 1
    outbox = Outbox(args.outbox)
    if args.command == "status":
        print(json.dumps(outbox.stats().as_dict()))
    elif args.command == "dead-letters":
        for letter in outbox.dead_letters(args.limit):
            print(json.dumps(letter, ensure_ascii=False))
    elif args.command == "retry":
        moved = outbox.retry_dead(args.keys or None)
        print(json.dumps({"moved_back": moved}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
