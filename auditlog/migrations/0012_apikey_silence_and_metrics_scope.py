# A write key's expected cadence and its silence (silence detection); the metrics scope.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('auditlog', '0011_scoped_reading'),
    ]

    operations = [
        migrations.AddField(
            model_name='apikey',
            name='expected_interval_seconds',
            field=models.PositiveIntegerField(blank=True, help_text="A write key's source is reported silent when no event arrives for this long (default AUDITLOG_SILENCE_AFTER_SECONDS).", null=True),
        ),
        migrations.AddField(
            model_name='apikey',
            name='silent_since',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name='apikey',
            name='scopes',
            field=models.CharField(help_text="Comma-separated: write; read (its own events) or read_all (every source's, internal events included); metrics (GET /metrics).", max_length=32),
        ),
    ]
