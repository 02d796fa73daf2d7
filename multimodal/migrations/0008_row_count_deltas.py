# Row counts become delta ledgers (agent33.observability.row_counts): triggers insert,
# never update a shared count row, so they take no lock another transaction holds.

from django.db import migrations, models


def install_delta_triggers(apps, schema_editor):
    """The count tables become delta ledgers in this migration: put the insert-only
    triggers in at once (post_migrate would too, but writers running during a deploy must
    not meet the old upsert triggers without their unique constraint)."""
    from agent33.observability.row_counts import install_row_counters, row_counters

    install_row_counters([c for c in row_counters() if c.source._meta.app_label == "multimodal"],
                         using=schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ('multimodal', '0007_seed_prices'),
        ('tenancy', '0003_idempotency_per_token'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='requestcount',
            name='mmcount_key_unique',
        ),
        migrations.AddIndex(
            model_name='requestcount',
            index=models.Index(fields=['tenant', 'modality', 'provider', 'state'], name='mmcount_key'),
        ),
        migrations.RunPython(install_delta_triggers, migrations.RunPython.noop),
    ]
