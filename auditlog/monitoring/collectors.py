"""What GET /metrics reads from the database at each scrape (by the one process answering it):
seal lag, checkpoint age, replica lag, partitions ahead, the last purge, each source's silence,
free disk space. A few index lookups; nothing counts rows."""

import os
import shutil
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from auditlog.db.partitions import events_partitioned, partitions_list
from auditlog.db.replica import REPLICA, replica_health
from auditlog.ingest.services import INTERNAL_SOURCE_NAME
from auditlog.models import ActionLog, Checkpoint, TrailLeaf
from auditlog.monitoring.silence import source_states


class DatabaseCollector:
    def collect(self):
        now = timezone.now()
        yield from self._trail(now)
        yield from self._sources(now)
        yield from self._storage(now)

    def _trail(self, now):
        last_sealed = TrailLeaf.objects.order_by("-leaf_index").values_list("event_id", flat=True).first()
        unsealed = ActionLog.objects.order_by("id")
        if last_sealed is not None:
            unsealed = unsealed.filter(id__gt=last_sealed)
        oldest = unsealed.values_list("received_at", flat=True).first()
        yield _gauge(
            "auditlog_seal_lag_seconds",
            "Age of the oldest event not sealed into the trail yet (0: all sealed).",
            (now - oldest).total_seconds() if oldest else 0.0,
        )
        checkpoint = Checkpoint.objects.order_by("-id").values_list("created_at", flat=True).first()
        if checkpoint is not None:
            yield _gauge(
                "auditlog_checkpoint_age_seconds",
                "Age of the newest signed checkpoint (auditlog_seal --follow signs at least every "
                "AUDITLOG_CHECKPOINT_INTERVAL_SECONDS).",
                (now - checkpoint).total_seconds(),
            )
        purge = (
            # the service's own record: a producer may name an action "auditlog.purge" too
            ActionLog.objects.filter(
                action="auditlog.purge", source__name=INTERNAL_SOURCE_NAME, source__scopes=""
            )
            .order_by("-occurred_at")
            .values_list("occurred_at", flat=True)
            .first()
        )
        if purge is not None:
            yield _gauge(
                "auditlog_last_purge_timestamp_seconds",
                "When the last purge ran (Unix time).",
                purge.timestamp(),
            )

    def _sources(self, now):
        age = GaugeMetricFamily(
            "auditlog_source_last_event_age_seconds",
            "Seconds since the source's newest event was received (since its key was made, without one).",
            labels=["source"],
        )
        expected = GaugeMetricFamily(
            "auditlog_source_expected_interval_seconds",
            "The source's bound before it counts as silent.",
            labels=["source"],
        )
        silent = GaugeMetricFamily(
            "auditlog_source_silent",
            "1 while the source has sent nothing for longer than its bound.",
            labels=["source"],
        )
        for state in source_states():
            age.add_metric([state.key.name], state.quiet_for(now).total_seconds())
            expected.add_metric([state.key.name], state.bound.total_seconds())
            silent.add_metric([state.key.name], 1.0 if state.silent(now) else 0.0)
        yield from (age, expected, silent)

    def _storage(self, now):
        if REPLICA in settings.DATABASES:
            state = replica_health.current()
            staleness = None if state is None else state.staleness(time.monotonic())
            yield _gauge(
                "auditlog_replica_up",
                "1 while the replica answers and is within its lag bound.",
                float(replica_health.usable()),
            )
            if staleness is not None:
                yield _gauge(
                    "auditlog_replica_lag_seconds",
                    "How far behind the primary the replica is, at most.",
                    staleness,
                )
        if events_partitioned():
            ahead = sum(1 for part in partitions_list() if part.lower > now)
            yield _gauge(
                "auditlog_partitions_ahead", "Event partitions made for periods after the current one.", ahead
            )
        free = _free_bytes()
        if free is not None:
            yield _gauge(
                "auditlog_database_disk_free_bytes",
                "Free space where the database lives: the SQLite file's directory, or PostgreSQL's data "
                "directory when this host can read it.",
                free,
            )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _free_bytes() -> float | None:
    if connection.vendor == "sqlite":
        directory = os.path.dirname(os.path.abspath(connection.settings_dict["NAME"]))
    else:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
                row = cursor.fetchone()
        except DatabaseError:
            return None
        directory = row[0] if row else None  # NULL unless the role may read it (pg_read_all_settings)
    try:
        return float(shutil.disk_usage(directory).free) if directory else None
    except OSError:  # another host's path
        return None
