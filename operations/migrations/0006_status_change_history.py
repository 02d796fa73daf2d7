# Every status change of every process type is recorded (DESIGN §8.1): ControlAction, which
# held only the changes people made, becomes StatusChange, with why (cause), where (path),
# the token's name and the request id.

from django.db import migrations, models
from django.db.models import Case, Value, When


def existing_rows_were_people(apps, schema_editor):
    """Rows written before this change were all people's: controls (the hub, the API's
    control endpoint, admin list actions: recorded as the hub) and staff moves (admin)."""
    StatusChange = apps.get_model("operations", "StatusChange")
    StatusChange._base_manager.update(
        cause="operator",
        path=Case(When(action="move", then=Value("admin")), default=Value("hub")),
    )


class Migration(migrations.Migration):

    dependencies = [
        ("operations", "0005_metrics_counts"),
    ]

    operations = [
        migrations.RenameModel("ControlAction", "StatusChange"),
        migrations.AddField(
            model_name="statuschange",
            name="cause",
            field=models.CharField(
                choices=[("operator", "Operator"), ("process", "Process"), ("system", "System")],
                default="operator", max_length=20,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="statuschange",
            name="path",
            field=models.CharField(
                choices=[("api", "API"), ("hub", "Hub"), ("admin", "Admin"), ("batch", "Batch"),
                         ("sweep", "Sweep"), ("worker", "Worker")],
                default="hub", max_length=20,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="statuschange",
            name="actor_name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="statuschange",
            name="request_id",
            field=models.CharField(blank=True, default="", max_length=128),
        ),
        migrations.RunPython(existing_rows_were_people, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="statuschange", name="ctrl_action_valid"),
        migrations.AlterField(
            model_name="statuschange",
            name="action",
            field=models.CharField(
                choices=[("pause", "Pause"), ("resume", "Resume"), ("cancel", "Cancel"),
                         ("approve", "Approve"), ("execute", "Execute"), ("expire", "Expire"),
                         ("move", "Move")],
                max_length=20,
            ),
        ),
        migrations.AddConstraint(
            model_name="statuschange",
            constraint=models.CheckConstraint(
                condition=models.Q(("action__in", ["pause", "resume", "cancel", "approve",
                                                   "execute", "expire", "move"])),
                name="ctrl_action_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="statuschange",
            constraint=models.CheckConstraint(
                condition=models.Q(("cause__in", ["operator", "process", "system"])),
                name="change_cause_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="statuschange",
            constraint=models.CheckConstraint(
                condition=models.Q(("path__in", ["api", "hub", "admin", "batch", "sweep",
                                                 "worker"])),
                name="change_path_valid",
            ),
        ),
        migrations.AlterModelOptions(
            name="autonomybudget",
            options={
                "ordering": ["-started_at", "-id"],
                "permissions": [("approve_budget",
                                 "Can approve autonomy budgets (draft or pending → active)")],
            },
        ),
    ]
