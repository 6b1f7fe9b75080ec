"""The outbox in the producer's own database: an event is a row written in the business
transaction, so it exists if and only if that transaction commits."""

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    key = models.CharField(max_length=128, unique=True)
    body = models.TextField()
    recorded_at = models.DateTimeField(default=timezone.now)
    attempts = models.IntegerField(default=0)
    not_before = models.FloatField(default=0)  # epoch seconds: due again after a failed send
    lease_until = models.FloatField(default=0)  # a sender holds it until then
    lease_owner = models.CharField(max_length=255, default="", blank=True)
    last_error = models.TextField(default="", blank=True)

    class Meta:
        db_table = "auditlog_client_outbox"
        indexes = [models.Index(fields=["not_before", "id"], name="auditlog_client_due")]

    def __str__(self):
        return self.key


class DeadLetter(models.Model):
    key = models.CharField(max_length=128, unique=True)
    body = models.TextField()
    recorded_at = models.DateTimeField()
    failed_at = models.DateTimeField(default=timezone.now)
    status = models.IntegerField()
    error = models.TextField()

    class Meta:
        db_table = "auditlog_client_dead_letter"

    def __str__(self):
        return f"{self.key} ({self.status})"


class Counter(models.Model):
    name = models.CharField(max_length=32, primary_key=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        db_table = "auditlog_client_counter"

    def __str__(self):
        return f"{self.name}={self.value}"
