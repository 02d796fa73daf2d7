"""Rate counters in the database, for deployments without Redis (agent33/auth/counters.py).

On PostgreSQL the table is UNLOGGED: counts are written by every events request and every
throttle lease, and a logged table would make each of those commits wait for a WAL flush.
An unlogged table is emptied after a crash of the database server, which only starts every
caller's window afresh.
"""

from django.db import migrations, models


def unlogged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE tenancy_ratecounter SET UNLOGGED")


class Migration(migrations.Migration):

    dependencies = [
        ('tenancy', '0003_idempotency_per_token'),
    ]

    operations = [
        migrations.CreateModel(
            name='RateCounter',
            fields=[
                ('key', models.CharField(max_length=255, primary_key=True, serialize=False)),
                ('window_ends_at', models.BigIntegerField()),
                ('used', models.BigIntegerField(default=0)),
            ],
            options={
                'indexes': [models.Index(fields=['window_ends_at'], name='ratecounter_window_end')],
            },
        ),
        migrations.RunPython(unlogged, migrations.RunPython.noop),
    ]
