"""Realistic demo events: skewed actors, a few dozen actions, IPv4 and IPv6, 90 days."""

import hashlib
import itertools
import multiprocessing
import queue
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from operator import itemgetter

from django.db import connection
from django.utils import timezone

from auditlog.events.definition import EVENT_FIELDS, Origin
from auditlog.events.formats import metadata_canonical
from auditlog.events.uuid7 import uuid7
from auditlog.ingest.storage import COLUMNS, events_bulk_insert_prepared, rows_prepare
from auditlog.keys.services import api_key_create
from auditlog.models import ApiKey

DEMO_KEY_NAME = "demo-data"
ACTORS = 3000
SPAN = timedelta(days=90)
CHUNK = 20_000  # rows per transaction: fewer commits rewrite hot index pages less often

# action -> (target type, failure rate)
ACTIONS = {
    "user.login": ("session", 0.0),
    "user.login_failed": ("session", 1.0),
    "user.logout": ("session", 0.0),
    "user.password_change": ("user", 0.02),
    "user.mfa_enable": ("user", 0.01),
    "user.invite": ("user", 0.02),
    "user.deactivate": ("user", 0.01),
    "role.grant": ("role", 0.03),
    "role.revoke": ("role", 0.03),
    "invoice.create": ("invoice", 0.02),
    "invoice.update": ("invoice", 0.03),
    "invoice.delete": ("invoice", 0.05),
    "invoice.send": ("invoice", 0.04),
    "invoice.export": ("invoice", 0.02),
    "payment.capture": ("payment", 0.03),
    "payment.refund": ("payment", 0.06),
    "customer.create": ("customer", 0.01),
    "customer.update": ("customer", 0.02),
    "customer.delete": ("customer", 0.04),
    "customer.export": ("customer", 0.02),
    "document.view": ("document", 0.01),
    "document.download": ("document", 0.01),
    "document.share": ("document", 0.03),
    "document.delete": ("document", 0.04),
    "report.run": ("report", 0.05),
    "report.export": ("report", 0.03),
    "settings.update": ("settings", 0.02),
    "api_key.create": ("api_key", 0.01),
    "api_key.revoke": ("api_key", 0.01),
    "webhook.create": ("webhook", 0.02),
    "webhook.delete": ("webhook", 0.02),
    "export.schedule": ("export", 0.03),
}
# Reads and logins dominate real trails.
ACTION_WEIGHTS = [
    30 if a in ("user.login", "document.view") else 8 if a.startswith("user.") else 3 for a in ACTIONS
]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "billing-service/4.2 (python-requests/2.32)",
    "crm-sync/1.9",
    "curl/8.5.0",
]
FIRST = [
    "ada",
    "grace",
    "alan",
    "edsger",
    "barbara",
    "ken",
    "margaret",
    "linus",
    "radia",
    "donald",
    "frances",
]
LAST = [
    "lovelace",
    "hopper",
    "turing",
    "dijkstra",
    "liskov",
    "thompson",
    "hamilton",
    "torvalds",
    "perlman",
    "knuth",
]


def _actors(rng: random.Random) -> tuple[list[tuple[str, str, str]], list[float]]:
    actors = []
    for n in range(ACTORS):
        if n % 50 == 49:
            actors.append(
                (f"svc-{n}", "service", f"{rng.choice(['billing', 'crm', 'etl', 'backup'])}-worker-{n}")
            )
        else:
            actors.append(
                (str(10_000 + n), "user", f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}")
            )
    actors.append(("system", "system", "scheduler"))
    weights = list(itertools.accumulate(1 / (rank + 1) ** 1.1 for rank in range(len(actors))))  # Zipf-like
    return actors, weights


def _ip(rng: random.Random) -> str:
    bits = rng.getrandbits(32)
    if bits & 0b11 == 0:  # one in four: IPv6
        return f"2001:db8:{bits >> 16:x}:{bits & 0xFFFF:x}::{rng.getrandbits(16) or 1:x}"
    return (
        f"{(10, 172, 192, 203)[bits & 0b11]}.{bits >> 24}.{(bits >> 16) & 0xFF}.{((bits >> 8) & 0xFF) or 1}"
    )


def demo_rows(
    count: int, source_id: int, *, seed: int | None = None, end: datetime | None = None
) -> Iterator[tuple]:
    """Yield `count` rows of storage.COLUMNS (for rows_prepare), oldest first, spread evenly
    over 90 days."""
    rng = random.Random(seed)
    actors, actor_weights = _actors(rng)
    actions = list(ACTIONS)
    action_weights = list(itertools.accumulate(ACTION_WEIGHTS))
    end = end or timezone.now()
    start, step = end - SPAN, SPAN / max(count, 1)
    for first in range(0, count, CHUNK):
        size = min(CHUNK, count - first)
        chosen_actors = rng.choices(actors, cum_weights=actor_weights, k=size)
        chosen_actions = rng.choices(actions, cum_weights=action_weights, k=size)
        for n, (actor_id, actor_type, actor_name), action in zip(
            range(first, first + size), chosen_actors, chosen_actions, strict=True
        ):
            yield _row(rng, n, start + step * n, actor_id, actor_type, actor_name, action, source_id)


_ROW = itemgetter(*COLUMNS)
# A field of the producer's that a demo event does not give: as if its producer left it out.
_ABSENT = {field.column: field.rule.absent for field in EVENT_FIELDS if field.origin is Origin.PRODUCER}


def _row(rng, n, occurred_at, actor_id, actor_type, actor_name, action, source_id) -> tuple:
    target_type, failure_rate = ACTIONS[action]
    target_number = 1 + rng.getrandbits(16) % 50_000
    occurred_at += timedelta(microseconds=rng.getrandbits(20))
    received_at = occurred_at + timedelta(microseconds=5000 + rng.getrandbits(20))
    outcome = "failure" if failure_rate and rng.random() < failure_rate else "success"
    metadata = {"request_id": f"{rng.getrandbits(64):016x}"}
    if target_type in ("invoice", "payment"):
        metadata["amount_cents"] = 100 + rng.getrandbits(19)
        metadata["currency"] = ("EUR", "USD", "GBP", "EUR")[n & 3]
    if outcome == "failure":
        metadata["reason"] = ("permission_denied", "not_found", "validation", "timeout")[n & 3]
    metadata_json = metadata_canonical(metadata)
    values = {
        **_ABSENT,
        "uuid": uuid7(int(received_at.timestamp() * 1000), rng.getrandbits(80)),
        "occurred_at": occurred_at,
        "received_at": received_at,
        "actor_id": actor_id,
        "actor_type": actor_type,
        "actor_name": actor_name,
        "action": action,
        "target_type": target_type,
        "target_id": str(target_number),
        "target_name": f"{target_type[:3].upper()}-{target_number}",
        "outcome": outcome,
        "ip_address": _ip(rng),
        "user_agent": USER_AGENTS[rng.getrandbits(3) % len(USER_AGENTS)],
        "metadata": metadata_json,  # as it is stored
        "source_id": source_id,
    }
    # Derived from the uuid, not PAYLOAD_HASH_V1, which would cost a fifth of a row's generation
    # (measured), the demo's bottleneck: a demo event has no idempotency key, so no replay ever
    # compares its hash with a body's.
    values["payload_hash"] = hashlib.sha256(values["uuid"].bytes).hexdigest()
    return _ROW(values)


def demo_source() -> ApiKey:
    key = ApiKey.objects.filter(name=DEMO_KEY_NAME).first()
    return key or api_key_create(name=DEMO_KEY_NAME, scopes={"write"})[0]


def events_demo_create(count: int, *, seed=None, progress: Callable[[int], None] | None = None) -> int:
    """Insert `count` demo events, a transaction per chunk, reporting progress per chunk.

    A forked process generates and formats the rows while this one inserts: on two cores
    that nearly doubles the rate. The child inherits this process's open connection but never
    uses it, and leaves through os._exit (multiprocessing), so it never closes it either.
    """
    source_id = demo_source().pk
    context = multiprocessing.get_context("fork")
    chunks = context.Queue(maxsize=4)
    producer = context.Process(target=_produce, args=(chunks, count, source_id, seed), daemon=True)
    producer.start()
    if connection.vendor == "sqlite":
        # A million rows' indexes outgrow SQLite's default 2 MB page cache; with 256 MB (for this
        # connection only) loading holds ~21k events/s instead of sliding to ~16k (measured).
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size=-262144")
    done = 0
    try:
        while done < count:
            try:
                chunk = chunks.get(timeout=5)
            except queue.Empty:
                if not producer.is_alive():
                    raise RuntimeError(f"the demo generator died (exit code {producer.exitcode})") from None
                continue
            events_bulk_insert_prepared(chunk)
            done += len(chunk)
            if progress:
                progress(done)
    finally:
        producer.kill()
        producer.join()
    return done


def _produce(chunks, count: int, source_id: int, seed) -> None:
    rows = demo_rows(count, source_id, seed=seed)
    while chunk := list(itertools.islice(rows, CHUNK)):
        chunks.put(rows_prepare(chunk))
