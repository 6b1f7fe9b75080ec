from django.db import models
from django.db.models import Q

from auditlog.events.uuid7 import uuid7


class Scope(models.TextChoices):
    READ = "read", "read"  # its own source's events
    READ_ALL = "read_all", "read_all"  # every source's, internal events included (auditors, SIEMs)
    WRITE = "write", "write"
    METRICS = "metrics", "metrics"  # GET /metrics only (Prometheus's scrape)


# What each scope a view asks for is satisfied by.
SCOPE_SATISFIED_BY = {
    Scope.READ: {Scope.READ, Scope.READ_ALL},
    Scope.WRITE: {Scope.WRITE},
    Scope.METRICS: {Scope.METRICS},
}
# Source names of this service's own events: no key may be given one.
RESERVED_SOURCE_PREFIX = "auditlog-"


class ApiKey(models.Model):
    """A producer's or reader's credential. Only a SHA-256 of the token is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.CharField(
        max_length=32,
        help_text="Comma-separated: write; read (its own events) or read_all (every source's, internal "
        "events included); metrics (GET /metrics).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    expected_interval_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A write key's source is reported silent when no event arrives for this long "
        "(default AUDITLOG_SILENCE_AFTER_SECONDS).",
    )
    silent_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix})"

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(filter(None, self.scopes.split(",")))

    @property
    def reads_every_source(self) -> bool:
        return Scope.READ_ALL in self.scope_set


class Outcome(models.TextChoices):
    SUCCESS = "success", "success"
    FAILURE = "failure", "failure"


class ActionLog(models.Model):
    """One audit event. Append-only: rows are never updated."""

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(unique=True, default=uuid7, editable=False)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    actor_id = models.CharField(max_length=255)
    actor_type = models.CharField(max_length=64, blank=True, default="")
    actor_name = models.CharField(max_length=255, blank=True, default="")
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_id = models.CharField(max_length=255, blank=True, default="")
    target_name = models.CharField(max_length=255, blank=True, default="")
    outcome = models.CharField(max_length=7, choices=Outcome.choices, default=Outcome.SUCCESS)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # Keys are revoked, never deleted (PROTECT), so no index is needed for the FK's own checks.
    source = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="events", db_index=False)
    # NULL, not "", means "no key". Unique per source, held by EventKey (a partitioned table's
    # unique constraints must include its partition key, so this one cannot be here).
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    payload_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = "audit event"
        indexes = [
            models.Index(fields=["occurred_at", "id"], name="auditlog_occurred"),
            # A key with the read scope lists its own source's events, newest first.
            models.Index(fields=["source", "occurred_at", "id"], name="auditlog_source"),
            models.Index(fields=["actor_id", "occurred_at", "id"], name="auditlog_actor"),
            models.Index(fields=["action", "occurred_at", "id"], name="auditlog_action"),
            # Targets: by id (with or without a type, ids are selective), or by type alone (the
            # admin filter), each newest first straight from the index.
            models.Index(fields=["target_id", "occurred_at", "id"], name="auditlog_target_id"),
            models.Index(fields=["target_type", "occurred_at", "id"], name="auditlog_target_type"),
            models.Index(fields=["actor_type", "occurred_at", "id"], name="auditlog_actor_type"),
            # Failures are few: a partial index finds them without reading the successes.
            models.Index(
                fields=["occurred_at", "id"], condition=Q(outcome="failure"), name="auditlog_failures"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(outcome__in=Outcome.values), name="auditlog_outcome_valid"),
        ]

    def __str__(self):
        return f"{self.actor_id} {self.action} {self.target_type}:{self.target_id}".rstrip(":")


class EventKey(models.Model):
    """An idempotency key a source used, and the event it stored: the home of the key's
    uniqueness, written in the same statement or transaction as the event. Narrow and not
    partitioned: on PostgreSQL the events table is partitioned by received_at
    (auditlog.db.partitions), and no unique constraint there can span partitions. A key lives as
    long as its event: a purge removes both."""

    pk = models.CompositePrimaryKey("source", "idempotency_key")
    # the primary key starts with it: no index of its own
    source = models.ForeignKey(
        ApiKey, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    idempotency_key = models.CharField(max_length=128)
    event_uuid = models.UUIDField()
    payload_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField()  # finds the event's partition; a purge deletes by it

    class Meta:
        indexes = [models.Index(fields=["received_at"], name="auditlog_eventkey_received")]

    def __str__(self):
        return f"{self.source_id}:{self.idempotency_key}"


class TrailLeaf(models.Model):
    """An event's leaf in the trail's Merkle tree (RFC 9162, docs/trail-format.md): its index,
    assigned when it is sealed and never reused, and the hash of its leaf bytes (LEAF_V1). No
    foreign key: the leaf stays when a purge removes the event, so the tree never shrinks."""

    leaf_index = models.BigIntegerField(primary_key=True)
    event_id = models.BigIntegerField(unique=True)
    leaf_hash = models.BinaryField(max_length=32)

    def __str__(self):
        return f"leaf {self.leaf_index} (event {self.event_id})"


class TrailNode(models.Model):
    """The hash of a complete subtree of 2**height leaves, starting at leaf index * 2**height,
    stored once complete for heights that are multiples of 8: every other node is at most 128
    stored hashes away (the idea of C2SP tlog-tiles, in rows)."""

    height = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["height", "index"], name="auditlog_trailnode_unique")]

    def __str__(self):
        return f"node {self.height}/{self.index}"


class Checkpoint(models.Model):
    """A signed checkpoint of the tree: a C2SP tlog-checkpoint body in a signed note."""

    tree_size = models.BigIntegerField(db_index=True)
    root_hash = models.BinaryField(max_length=32)
    note = models.TextField()
    key_id = models.CharField(max_length=8)  # hex, as in the verifier key
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        get_latest_by = "id"

    def __str__(self):
        return f"checkpoint of {self.tree_size} leaves"


class RetentionRecord(models.Model):
    """A purge by policy, signed with the trail key: the leaves whose events it removed, so that
    a verifier tells a purge from a deletion. The leaves themselves stay (the tree never shrinks)."""

    first_leaf = models.BigIntegerField()
    last_leaf = models.BigIntegerField(unique=True)
    purged_count = models.BigIntegerField()
    cutoff = models.DateTimeField()
    policy = models.CharField(max_length=200)
    note = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["last_leaf"]

    def __str__(self):
        return f"purge of leaves {self.first_leaf}-{self.last_leaf}"
