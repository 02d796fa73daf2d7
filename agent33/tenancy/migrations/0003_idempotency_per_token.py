"""Idempotency records belong to the token that made them, not to its tenant.

Rows written before this migration name only a tenant (or an operator token's prefix), so
they cannot be attributed to one token: they are dropped with the old table. Each was a
replay window of at most 24 hours; a retry of such a request runs again.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenancy', '0002_idempotency_record'),
    ]

    operations = [
        migrations.DeleteModel(name='IdempotencyRecord'),
        migrations.CreateModel(
            name='IdempotencyRecord',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=255)),
                ('fingerprint', models.CharField(max_length=64)),
                ('state', models.CharField(default='in_flight', max_length=16)),
                ('status_code', models.PositiveSmallIntegerField(null=True)),
                ('content_type', models.CharField(blank=True, max_length=100)),
                ('response_body', models.BinaryField(blank=True, default=b'')),
                ('response_headers', models.JSONField(default=dict)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('token', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.apitoken')),
            ],
            options={
                'indexes': [models.Index(fields=['created_at'], name='idempotency_created')],
                'constraints': [models.UniqueConstraint(fields=('token', 'key'), name='idempotency_token_key_unique'), models.CheckConstraint(condition=models.Q(('state__in', ['in_flight', 'completed'])), name='idempotency_state_valid')],
            },
        ),
    ]
