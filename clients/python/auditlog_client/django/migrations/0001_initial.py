# The outbox, dead letters and counters of the Django integration.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Counter",
            fields=[
                ("name", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={
                "db_table": "auditlog_client_counter",
            },
        ),
        migrations.CreateModel(
            name="DeadLetter",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=128, unique=True)),
                ("body", models.TextField()),
                ("recorded_at", models.DateTimeField()),
                ("failed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("status", models.IntegerField()),
                ("error", models.TextField()),
            ],
            options={
                "db_table": "auditlog_client_dead_letter",
            },
        ),
        migrations.CreateModel(
            name="OutboxEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=128, unique=True)),
                ("body", models.TextField()),
                ("recorded_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("attempts", models.IntegerField(default=0)),
                ("not_before", models.FloatField(default=0)),
                ("lease_until", models.FloatField(default=0)),
                ("lease_owner", models.CharField(blank=True, default="", max_length=255)),
                ("last_error", models.TextField(blank=True, default="")),
            ],
            options={
                "db_table": "auditlog_client_outbox",
                "indexes": [models.Index(fields=["not_before", "id"], name="auditlog_client_due")],
            },
        ),
    ]
