# Row counts become delta ledgers (agent33.observability.row_counts): triggers insert,
# never update a shared count row, so they take no lock another transaction holds.

from django.db import migrations, models


def install_delta_triggers(apps, schema_editor):
    """The count tables become delta ledgers in this migration: put the insert-only
    triggers in at once (post_migrate would too, but writers running during a deploy must
    not meet the old upsert triggers without their unique constraint)."""
    from agent33.observability.row_counts import install_row_counters, row_counters

    install_row_counters([c for c in row_counters() if c.source._meta.app_label == "operations"],
                         using=schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ('operations', '0006_status_change_history'),
        ('tenancy', '0003_idempotency_per_token'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='controlcount',
            name='ctrlcount_key_unique',
        ),
        migrations.RemoveConstraint(
            model_name='processcount',
            name='proccount_key_unique',
        ),
        migrations.AddIndex(
            model_name='controlcount',
            index=models.Index(fields=['tenant', 'process_type', 'action'], name='ctrlcount_key'),
        ),
        migrations.AddIndex(
            model_name='processcount',
            index=models.Index(fields=['tenant', 'process_type', 'status'], name='proccount_key'),
        ),
        migrations.RunPython(install_delta_triggers, migrations.RunPython.noop),
    ]
