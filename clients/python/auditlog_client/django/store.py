"""The Django outbox table as the Sender's store: the same five operations as the SQLite
outbox, each one short transaction on the producer's database."""

import time

from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from auditlog_client.django.conf import setting
from auditlog_client.django.models import Counter, DeadLetter, OutboxEvent
from auditlog_client.outbox import Item, Stats, dead_owners, lease_owner

TABLE = OutboxEvent._meta.db_table


class DjangoOutbox:
    def __init__(self, using: str | None = None):
        self.using = using or setting("DATABASE")

    def _events(self):
        return OutboxEvent.objects.using(self.using)

    def claim(self, limit: int, lease: float, max_bytes: int) -> list[Item]:
        """One UPDATE leases the oldest due rows: atomic on SQLite (one statement holds the write
        lock), and on PostgreSQL the rows another sender is leasing are skipped (SKIP LOCKED),
        with the lease checked again after any wait."""
        now, until, owner = time.time(), time.time() + lease, lease_owner()
        db = connections[self.using]
        lock = " FOR UPDATE SKIP LOCKED" if db.vendor == "postgresql" else ""
        with transaction.atomic(using=self.using), db.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET lease_until = %s, lease_owner = %s WHERE lease_until < %s AND id IN"
                f" (SELECT id FROM {TABLE} WHERE not_before <= %s AND lease_until < %s"
                f" ORDER BY id LIMIT %s{lock})",
                [until, owner, now, now, now, limit],
            )
            rows = list(
                self._events()
                .filter(lease_owner=owner, lease_until=until)
                .order_by("id")
                .values_list("id", "key", "body", "attempts")
            )
        items, size = [], 0
        for row in rows:
            size += len(row[2]) + 1
            if items and size > max_bytes:
                break
            items.append(Item(*row))
        if len(items) < len(rows):  # over the batch's bytes: the rest goes in the next batch
            self._events().filter(id__in=[row[0] for row in rows[len(items) :]]).update(
                lease_until=0, lease_owner=""
            )
        return items

    def delivered(self, ids: list[int]) -> None:
        if ids:
            with transaction.atomic(using=self.using):
                gone, _ = self._events().filter(id__in=ids).delete()
                self._count("delivered", gone)

    def dead(self, failures: list[tuple[Item, int, str]]) -> None:
        if not failures:
            return
        with transaction.atomic(using=self.using):
            recorded = dict(
                self._events()
                .filter(id__in=[item.id for item, _, _ in failures])
                .values_list("id", "recorded_at")
            )
            for item, status, error in failures:
                if item.id in recorded:
                    DeadLetter.objects.using(self.using).update_or_create(
                        key=item.key,
                        defaults={
                            "body": item.body,
                            "recorded_at": recorded[item.id],
                            "status": status,
                            "error": error,
                        },
                    )
            gone, _ = self._events().filter(id__in=list(recorded)).delete()
            self._count("dead_lettered", gone)

    def retry_later(self, items: list[Item], delay: float, error: str) -> None:
        self._count("retried", len(items))
        self._events().filter(id__in=[item.id for item in items]).update(
            lease_until=0,
            lease_owner="",
            attempts=F("attempts") + 1,
            not_before=time.time() + delay,
            last_error=error[:500],
        )

    def release_dead_owners(self) -> int:
        owners = (
            self._events()
            .filter(lease_until__gte=time.time())
            .exclude(lease_owner="")
            .values_list("lease_owner", flat=True)
        )
        dead = dead_owners(owners)
        return (
            self._events().filter(lease_owner__in=dead).update(lease_until=0, lease_owner="") if dead else 0
        )

    def last_id(self) -> int:
        return self._events().order_by("-id").values_list("id", flat=True).first() or 0

    def pending_through(self, last_id: int) -> int:
        return self._events().filter(id__lte=last_id).count()

    def stats(self) -> Stats:
        counters = dict(Counter.objects.using(self.using).values_list("name", "value"))
        oldest = self._events().order_by("id").values_list("recorded_at", flat=True).first()
        return Stats(
            self._events().count(),
            counters.get("delivered", 0),
            counters.get("dead_lettered", 0),
            None if oldest is None else max((timezone.now() - oldest).total_seconds(), 0.0),
            counters.get("retried", 0),
        )

    def _count(self, name: str, by: int) -> None:
        if by:
            counter, _ = Counter.objects.using(self.using).get_or_create(name=name)
            Counter.objects.using(self.using).filter(pk=counter.pk).update(value=F("value") + by)
