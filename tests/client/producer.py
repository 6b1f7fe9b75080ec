"""A producer process for the client's live tests: records events with known keys from several
threads, writing each key to its thread's log once record() has returned.

    python -m tests.client.producer OUTBOX URL TOKEN PREFIX --threads N --count N [--send] [--close S]
"""

import argparse
import threading
from pathlib import Path

from auditlog_client import Client


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("outbox", "url", "token", "prefix"):
        parser.add_argument(name)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--count", type=int, default=0, help="events per thread")
    parser.add_argument("--send", action="store_true", help="run the sender thread")
    parser.add_argument("--close", type=float, default=0.0, help="deliver for up to this long at the end")
    parser.add_argument("--log-dir", default=".")
    args = parser.parse_args()
    client = Client(args.url, args.token, args.outbox, send=args.send, full_timeout=120, max_backoff=1.0)

    def record(thread: int) -> None:
        with open(Path(args.log_dir) / f"{args.prefix}-{thread}.keys", "a", buffering=1) as log:
            for n in range(args.count):
                key = f"{args.prefix}-{thread}-{n}"
                client.record(
                    action="invoice.update",
                    actor={"id": f"user-{thread}", "type": "user"},
                    target={"type": "invoice", "id": n},
                    metadata={"changes": {"total": [n, n + 1]}},
                    idempotency_key=key,
                )
                log.write(key + "\n")

    threads = [threading.Thread(target=record, args=(t,)) for t in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("recorded", flush=True)
    delivered = client.close(timeout=args.close)
    print("delivered" if delivered else "not delivered", flush=True)


if __name__ == "__main__":
    main()
