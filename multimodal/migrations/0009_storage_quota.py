# A per-tenant artifact storage quota (DESIGN §8.2): the policy's max_storage_bytes and the
# usage counted as artifacts are stored, starting from what is stored already.

import django.core.validators
import django.db.models.deletion
import django.db.models.manager
import django.utils.timezone
from django.db import migrations, models
from django.db.models import Sum


def count_what_is_stored(apps, schema_editor):
    Artifact = apps.get_model("multimodal", "Artifact")
    StorageUsage = apps.get_model("multimodal", "StorageUsage")
    totals = (Artifact._base_manager.values("tenant_id").annotate(total=Sum("size_bytes"))
              .order_by())
    StorageUsage._base_manager.bulk_create(
        [StorageUsage(tenant_id=row["tenant_id"], stored_bytes=row["total"]) for row in totals]
    )


class Migration(migrations.Migration):

    dependencies = [
        ('multimodal', '0008_row_count_deltas'),
        ('tenancy', '0003_idempotency_per_token'),
    ]

    operations = [
        migrations.AddField(
            model_name='multimodalpolicy',
            name='max_storage_bytes',
            field=models.PositiveBigIntegerField(default=1073741824, help_text='Bytes of artifacts the tenant may keep stored (operators and staff set it).', validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(1099511627776)]),
        ),
        migrations.CreateModel(
            name='StorageUsage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('stored_bytes', models.BigIntegerField(default=0)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to='tenancy.tenant')),
            ],
            options={
                'verbose_name_plural': 'storage usage',
                'constraints': [models.UniqueConstraint(fields=('tenant',), name='mmstorage_one_per_tenant')],
            },
            managers=[
                ('objects', django.db.models.manager.Manager()),
                ('all_tenants', django.db.models.manager.Manager()),
            ],
        ),
        migrations.RunPython(count_what_is_stored, migrations.RunPython.noop),
    ]
